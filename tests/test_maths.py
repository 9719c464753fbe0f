"Outside-in tests of the post-training maths: light imports and one end-to-end RCE → GRPO computation"
import json, subprocess, sys
import pytest
import torch

MODULES = ['lever_plus.rewards', 'lever_plus.rce', 'lever_plus.grpo', 'lever_plus.control', 'lever_plus.curriculum']


def test_imports_are_light():
    "The maths modules import without pulling in transformers (checked in a fresh interpreter)"
    code = (f"import sys, importlib\nfor m in {MODULES!r}: importlib.import_module(m)\n"
            "heavy = [m for m in ('transformers', 'lever_plus.model', 'lever_plus.sim', 'lever_plus.data') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]', out.stdout


def _seq_logp(theta, beams):
    "Toy pointer policy: per-query logits over K candidates, no repeats; (B, G) sequence log-probs"
    B, G, S = beams.shape
    logits = theta[:, None, :].expand(B, G, -1)
    picked = torch.zeros(B, G, theta.shape[1], dtype=torch.bool)
    total = torch.zeros(B, G)
    for s in range(S):
        lp = logits.masked_fill(picked, float('-inf')).log_softmax(-1)  # (B, G, K)
        total = total + lp.gather(-1, beams[..., s:s + 1]).squeeze(-1)
        picked = picked.scatter(-1, beams[..., s:s + 1], True)
    return total


def test_end_to_end_rce_then_grpo():
    from lever_plus.core import TrainConfig, ControlConfig, GRPOConfig, RewardConfig
    from lever_plus.rewards import sequence_reward, combine_rewards, group_advantages, adv_kwargs
    from lever_plus.rce import rce_loss, tau_schedule, schedule_progress
    from lever_plus.grpo import grpo_loss, grpo_kwargs
    from lever_plus.control import init_control, update_control, ControlState
    from lever_plus.curriculum import make_stages, stage_at, stage_mask, total_epochs

    g = torch.Generator().manual_seed(0)
    B, K, G, S, d = 3, 6, 4, 2, 8
    query, cands = torch.randn(B, d, generator=g), torch.randn(B, K, d, generator=g)
    beams = torch.stack([torch.randperm(K, generator=g)[:S] for _ in range(B * G)]).reshape(B, G, S)
    scores = torch.tensor([[0.30, 0.20, 0.10, 0.05], [0.4, 0.4, 0.4, 0.4], [0.2, 0.1, 0.0, -1.0]])
    mask = torch.tensor([[True] * 4, [True] * 4, [True, True, True, False]])
    cfg = TrainConfig(reward=RewardConfig(w_beam=1.0, w_seq=0.5), grpo=GRPOConfig(seq_ratio='mean'))

    # rewards → advantages: group 1 has equal info scores, so only the sequence reward separates its beams
    seq = sequence_reward(query, cands, beams, mask)
    reward = combine_rewards(scores, seq, None, cfg.reward, mask)
    adv, st = group_advantages(reward, mask, **adv_kwargs(cfg.grpo))
    assert torch.allclose(adv.sum(-1), torch.zeros(B), atol=1e-5)
    assert (adv[~mask] == 0).all() and st['frac_zero_std'] == 0.0
    adv_beam_only, st2 = group_advantages(combine_rewards(scores, mask=mask), mask)
    assert st2['zero_std'].tolist() == [False, True, False] and (adv_beam_only[1] == 0).all()

    stages = make_stages(cfg.curriculum)
    assert [s.name for s in stages] == ['rce/all', 'grpo/top3', 'grpo/all'] and total_epochs(stages) == 4
    theta = torch.zeros(B, K, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=1.0)

    # stage 1: RCE pushes up the best beam of each query
    stage, _ = stage_at(stages, 0)
    assert stage.kind == 'rce'
    for step in range(5):
        loss, met = rce_loss(_seq_logp(theta, beams), scores, stage_mask(stage, scores, mask),
                             tau_schedule(schedule_progress(step, 5), cfg.rce.tau_start, cfg.rce.tau_end))
        opt.zero_grad(); loss.backward(); opt.step()
    assert met['tau'] == 0.5 and torch.isfinite(theta).all()
    lp = _seq_logp(theta.detach(), beams)
    assert lp[0, 0] > lp[0, 3] and lp[2, 0] > lp[2, 2]

    # stage 2: GRPO on the top-3 beams against the RCE policy as π_old = π_ref
    stage, _ = stage_at(stages, 1)
    sub = stage_mask(stage, reward, mask)
    assert sub.sum(-1).tolist() == [3, 3, 3]
    adv, _ = group_advantages(reward, sub, **adv_kwargs(cfg.grpo))
    old = _seq_logp(theta.detach(), beams)
    state = init_control(cfg.control, cfg.grpo.beta)
    loss, met = grpo_loss(_seq_logp(theta, beams), old, old, adv, sub, state.beta, **grpo_kwargs(cfg.grpo, S))
    # π = π_old = π_ref: ratio 1, KL 0, loss = −mean advantage over the beams in the loss (= 0 for z-scores)
    assert met['mean_ratio'] == 1.0 and met['kl'] == 0.0 and abs(met['ppo_loss']) < 1e-6
    objective_before = (adv * old).sum()
    opt.zero_grad(); loss.backward(); opt.step()
    objective_after = (adv * _seq_logp(theta.detach(), beams)).sum()
    assert objective_after > objective_before  # one step moves probability towards positive advantages

    # the controller reacts to a KL above the band, and its state survives a JSON round trip
    state = update_control(state, 0.5, cfg.control)
    assert state.beta == pytest.approx(0.15) and state.temperature == pytest.approx(1.1)
    assert ControlState.from_state_dict(json.loads(json.dumps(state.state_dict()))) == state
