"""Training robustness: a post-training run interrupted by SIGINT / SIGKILL at random points and resumed with
`--resume` ends bit-identical to an uninterrupted run; every interruption leaves a loadable last checkpoint;
non-finite losses / gradients are skipped, counted, and stop the run after `run.max_bad_steps` in a row;
the log-ratio and KL clamps keep extreme inputs finite."""
import json, math, random, shutil, signal, subprocess, time
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
from lever_plus.core import CurriculumConfig, DataConfig, RunConfig, TrainConfig, TrainingError
from lever_plus.model import PointerSelector
from lever_plus.checkpoint import latest_checkpoint, load_trainer_state
from conftest import cli_env, grpo_args, script

N_EPOCHS = 4  # 1 RCE + 3 GRPO epochs of 3 steps each


def _args(world, sft, out, *extra):
    return [str(a) for a in grpo_args(world, sft, out, '--rce_epochs', 1, '--grpo_epochs', N_EPOCHS - 1, '--seed', 3, *extra)]


def _start(args, log:Path) -> subprocess.Popen:
    with open(log.with_suffix('.out'), 'w') as o, open(log.with_suffix('.err'), 'w') as e:
        # a shell without job control starts background jobs with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default disposition, as an interactive terminal would
        return subprocess.Popen([script('lever_plus_grpo'), *args], stdout=o, stderr=e, env=cli_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(path:Path, proc:subprocess.Popen, timeout:float=300) -> bool:
    "Poll until `path` exists (True) or `proc` ends first (False)"
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None: return False
        if time.monotonic() - t0 > timeout: proc.kill(); raise TimeoutError(f'{path} did not appear in {timeout} s')
        time.sleep(0.002)
    return True


def _inspect(out:Path) -> dict:
    "What an interrupted run folder holds: its newest checkpoint must load (weights + trainer state) and be complete"
    ck = latest_checkpoint(out)
    info = dict(latest=None if ck is None else ck.name)
    if ck is None: return info
    model, ts = PointerSelector.from_pretrained(ck), load_trainer_state(ck)
    info.update(state_epoch=ts['state']['epoch'], n_params=model.n_params,
                complete=[sorted(p.name for p in d.iterdir()) for d in sorted((out/'checkpoints').glob('epoch_*'))])
    return info


def _weights(d:Path) -> dict: return load_file(str(d/'model.safetensors'))


def _rows(out:Path) -> list:
    "metrics.jsonl rows without wall-clock fields"
    return [{k: v for k, v in json.loads(l).items() if 'time' not in k} for l in (out/'metrics.jsonl').read_text().splitlines() if l.strip()]


@pytest.fixture(scope='module')
def runs(world, sft_ckpt, tmp_path_factory) -> dict:
    "An uninterrupted reference run, and the same run stopped by SIGINT, then SIGKILLed at seeded random points, resumed each time"
    tmp = tmp_path_factory.mktemp('interrupt')
    ref_out, out = tmp/'reference_run', tmp/'interrupted_run'
    procs = []  # every process started here, killed if the fixture fails half-way
    def start(args, log): procs.append(_start(args, log)); return procs[-1]
    try:
        ref = start(_args(world, sft_ckpt, ref_out), tmp/'ref')  # runs alongside; polling makes the kills timing-independent
        events, rng = [], random.Random(1234)
        # 1) SIGINT as soon as the first epoch checkpoint exists
        p = start(_args(world, sft_ckpt, out), tmp/'run0')
        assert _wait_for(out/'checkpoints'/'epoch_001', p), (tmp/'run0.err').read_text()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=300)
        events.append(dict(signal='SIGINT', rc=rc, stderr=(tmp/'run0.err').read_text(), **_inspect(out),
                           interrupted=PointerSelector.from_pretrained(out/'interrupted').n_params if (out/'interrupted').exists() else None))
        # 2) resume, then SIGKILL: the moment epoch 2's checkpoint appears, then a seeded random 0–0.3 s after epoch 3's
        #    (mid-epoch 4 or mid-save); each time resume again; the last resume runs to the end
        for i, (target, delay) in enumerate([(2, 0.0), (3, rng.uniform(0, 0.3))], 1):
            p = start(_args(world, sft_ckpt, out, '--resume', out), tmp/f'run{i}')
            assert _wait_for(out/'checkpoints'/f'epoch_{target:03d}', p), (tmp/f'run{i}.err').read_text()
            time.sleep(delay)
            alive = p.poll() is None
            if alive: p.send_signal(signal.SIGKILL)
            rc = p.wait(timeout=300)
            events.append(dict(signal='SIGKILL' if alive else None, rc=rc, stderr=(tmp/f'run{i}.err').read_text(), **_inspect(out)))
        i += 1
        p = start(_args(world, sft_ckpt, out, '--resume', out), tmp/f'run{i}')
        final_rc, ref_rc = p.wait(timeout=300), ref.wait(timeout=300)
    finally:
        for q in procs:
            if q.poll() is None: q.kill(); q.wait()
    return dict(ref=ref_out, out=out, events=events, final_rc=final_rc, ref_rc=ref_rc,
                final_err=(tmp/f'run{i}.err').read_text(), ref_err=(tmp/'ref.err').read_text())


def test_sigint_stops_cleanly_and_keeps_a_checkpoint(runs):
    ev = runs['events'][0]
    assert ev['signal'] == 'SIGINT' and ev['rc'] == 130, ev
    assert 'interrupted' in ev['stderr'] and 'Traceback' not in ev['stderr'], ev['stderr']
    assert ev['latest'] is not None and int(ev['latest'][-3:]) < N_EPOCHS, ev  # it stopped early, from a saved epoch
    assert ev['interrupted'] == ev['n_params'] and f"{runs['out']/'interrupted'}" in ev['stderr'], ev  # the weights at the interrupt, loadable


def test_every_kill_leaves_a_loadable_last_checkpoint(runs):
    kills = [e for e in runs['events'] if e['signal'] == 'SIGKILL']
    assert len(kills) >= 2, runs['events']
    for ev in runs['events']:
        assert ev['rc'] in (130, -signal.SIGKILL, 0), ev
        assert ev['latest'] is not None and ev['state_epoch'] == int(ev['latest'][-3:]), ev  # weights and state agree
        assert all(c == ['config.json', 'model.safetensors', 'trainer_state.pt'] for c in ev['complete']), ev
    got = [int(e['latest'][-3:]) for e in runs['events']]
    assert got == sorted(got), got  # progress is never lost


def test_resumed_run_equals_uninterrupted_run(runs):
    assert runs['ref_rc'] == 0, runs['ref_err']
    assert runs['final_rc'] == 0, runs['final_err']
    ref, out = runs['ref'], runs['out']
    for sub in ('reference', 'best', f'checkpoints/epoch_{N_EPOCHS:03d}'):
        a, b = _weights(ref/sub), _weights(out/sub)
        assert a.keys() == b.keys()
        for k in a: assert torch.equal(a[k], b[k]), (sub, k)  # bit for bit
    assert _rows(out) == _rows(ref)
    assert json.loads((out/'best'/'best.json').read_text()) == json.loads((ref/'best'/'best.json').read_text())
    st_a, st_b = load_trainer_state(ref/'checkpoints'/f'epoch_{N_EPOCHS:03d}'), load_trainer_state(out/'checkpoints'/f'epoch_{N_EPOCHS:03d}')
    assert st_a['state'] == st_b['state']

# ---------------------------------------------------------------------------------------------------------------
# resume after a kill at a chosen point (in-process)

@pytest.fixture(scope='module')
def data(world):
    from lever_plus.data import load_datasets
    return load_datasets(world/'beams_train.json', world, val_beam_data=world/'beams_val.json')


def _cfg(**run):
    return TrainConfig(data=DataConfig(batch_size=16), curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=1), run=RunConfig(**run))


def _post_train(sft, data, out, cfg, resume=False, log=None):
    from lever_plus.train import post_train
    return post_train(cfg, PointerSelector.from_pretrained(sft), data['train'], data['val'], out, resume=resume, log=log, progress=False)


@pytest.fixture(scope='module')
def two_epochs(sft_ckpt, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('two')/'run'
    _post_train(sft_ckpt, data, out, _cfg())
    return out


def _killed_before_last_checkpoint(two_epochs, tmp_path) -> Path:
    "A copy of a finished 2-epoch run as a kill leaves it after epoch 2's metrics were appended, before its checkpoint"
    out = tmp_path/'run'; shutil.copytree(two_epochs, out)
    shutil.rmtree(out/'checkpoints'/'epoch_002')
    return out


def test_kill_between_metrics_and_checkpoint(two_epochs, sft_ckpt, data, tmp_path):
    out = _killed_before_last_checkpoint(two_epochs, tmp_path)
    _post_train(sft_ckpt, data, out, _cfg(), resume=True)
    assert _rows(out) == _rows(two_epochs)  # the epoch-2 lines of the killed run were dropped, then written again
    a, b = _weights(two_epochs/'checkpoints'/'epoch_002'), _weights(out/'checkpoints'/'epoch_002')
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kill_in_the_middle_of_a_metrics_line(two_epochs, sft_ckpt, data, tmp_path):
    out = _killed_before_last_checkpoint(two_epochs, tmp_path)
    with open(out/'metrics.jsonl', 'a') as f: f.write('{"kind": "step", "epoch": 2, "ste')  # the write was cut here
    _post_train(sft_ckpt, data, out, _cfg(), resume=True)
    assert _rows(out) == _rows(two_epochs)

# ---------------------------------------------------------------------------------------------------------------
# numerical guards

def _flat(model) -> torch.Tensor: return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def test_non_finite_weights_stop_after_max_bad_steps(sft_ckpt, data, tmp_path):
    from lever_plus.train import post_train
    policy = PointerSelector.from_pretrained(sft_ckpt)
    with torch.no_grad(): policy.inp.weight[0, 0] = float('nan')  # every log-prob, hence every loss, is NaN
    rows = []
    with pytest.raises(TrainingError, match=r'3 consecutive non-finite losses/gradients at step 3 \(epoch 1, stage rce'):
        post_train(_cfg(max_bad_steps=3), policy, data['train'], data['val'], tmp_path/'run', log=rows.append, progress=False)
    assert [(r['step'], r['skipped'], r['loss']) for r in rows] == [(1, True, None), (2, True, None)]
    assert not (tmp_path/'run'/'checkpoints').exists()  # nothing past the (frozen) reference was saved


def test_bad_steps_are_skipped_counted_and_reset(sft_ckpt, data, tmp_path, monkeypatch):
    "Steps 2, 3 (NaN loss) and 5 (finite loss, NaN gradients) are skipped without touching the weights; no 3 in a row"
    import lever_plus.train as T
    calls = {'n': 0}
    def flaky(step_fn):
        def f(policy, *a, **k):
            loss, m = step_fn(policy, *a, **k)
            calls['n'] += 1
            if calls['n'] in (2, 3): loss = loss * float('nan')
            if calls['n'] == 5:  # d sqrt(x)/dx at x = 0 is inf, times 0 → NaN gradients, loss unchanged
                p = next(policy.parameters())
                loss = loss + 0 * torch.sqrt(((p - p.detach()) ** 2).sum())
            return loss, m
        return f
    monkeypatch.setattr(T, 'rce_step', flaky(T.rce_step)); monkeypatch.setattr(T, 'grpo_step', flaky(T.grpo_step))
    policy = PointerSelector.from_pretrained(sft_ckpt)
    snaps, rows = [_flat(policy)], []
    def log(r):
        if r['kind'] == 'step': rows.append(r); snaps.append(_flat(policy))
    res = T.post_train(_cfg(max_bad_steps=3), policy, data['train'], data['val'], tmp_path/'run', log=log, progress=False)
    assert [r['step'] for r in rows if r['skipped']] == [2, 3, 5] and res['skipped_steps'] == 3
    assert rows[4]['loss'] is None and math.isnan(rows[4]['grad_norm'])  # finite loss, NaN gradients: skipped too
    for i, r in enumerate(rows):
        if r['skipped']: assert torch.equal(snaps[i], snaps[i + 1]), r['step']  # no optimiser step
    assert any(not torch.equal(snaps[i], snaps[i + 1]) for i, r in enumerate(rows) if not r['skipped'])
    assert [r['skipped_steps'] for r in _rows(tmp_path/'run') if r['kind'] == 'epoch'] == [2, 3]  # epoch 1 = steps 1–3, epoch 2 = steps 4–6
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_kl_and_ratio_clamps_keep_extreme_inputs_finite():
    from lever_plus.grpo import kl_k3, grpo_loss
    inf = float('inf')
    logp = torch.tensor([-1e4, 0., 0., -inf, -inf, 5.], requires_grad=True)
    ref = torch.tensor([0., -1e4, -inf, -inf, 0., 5.])
    k3 = kl_k3(logp, ref)  # d = ref − logp clamped to ±20; k3 = e^d − 1 − d
    expect = torch.tensor([math.expm1(20) - 20, math.expm1(-20) + 20, math.expm1(-20) + 20, 0., math.expm1(20) - 20, 0.])
    torch.testing.assert_close(k3, expect, rtol=1e-6, atol=0)
    k3.sum().backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[[0, 1, 2, 4]].eq(0).all()  # clamped: no gradient, not NaN
    # GRPO loss: log-ratios of ±1e4 give the same loss as ±log_ratio_clip; −inf log-probs stay finite
    def loss_of(lr):
        lp = torch.tensor([[lr, -lr, 0., -inf]], requires_grad=True)
        old = torch.tensor([[0., 0., 0., -inf]])
        loss, m = grpo_loss(lp, old, old, torch.tensor([[1., -1., 0.5, -0.5]]), torch.ones(1, 4, dtype=torch.bool), beta=0.1, log_ratio_clip=20.)
        loss.backward()
        return loss, m, lp.grad
    big, m, g = loss_of(1e4)
    at_clip, _, _ = loss_of(20.)
    assert torch.isfinite(big) and torch.isfinite(g).all() and all(math.isfinite(v) for v in m.values())
    torch.testing.assert_close(big, at_clip, rtol=0, atol=0)
    # padded beams holding NaN / ±inf do not leak into the loss or the gradients
    lp = torch.tensor([[-1.0, float('nan'), inf]], requires_grad=True)
    old = torch.tensor([[-1.2, -inf, float('nan')]])
    mask = torch.tensor([[True, False, False]])
    loss, _ = grpo_loss(lp, old, old, torch.tensor([[1., float('nan'), 2.]]), mask, beta=0.1)
    loss.backward()
    clean = torch.tensor([[-1.0, 0., 0.]], requires_grad=True)
    loss0, _ = grpo_loss(clean, torch.tensor([[-1.2, 0., 0.]]), torch.tensor([[-1.2, 0., 0.]]), torch.tensor([[1., 0., 2.]]), mask, beta=0.1)
    assert torch.isfinite(loss) and torch.equal(loss, loss0) and torch.isfinite(lp.grad).all()
