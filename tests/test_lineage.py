"The Lever-Plus recipe's model lineage as baselines: v0 (GPT-2 over pool ids) and v2_lora (LoRA on a frozen v2)"
import dataclasses, json, subprocess, sys
from pathlib import Path
import pytest
import torch
from lever_plus.core import ModelConfig, SFTConfig, TrainConfig, DataConfig, CurriculumConfig, GRPOConfig, RunConfig, CheckpointError, set_seed
from lever_plus.model import PointerSelector, load_selector
from lever_plus.v0 import GPTSelector
from lever_plus.lora import lora_parameters, merge_lora, selector_step_log_probs
from conftest import run_script


def make_v0(n_pool=60, d=6, D=16, layers=2, heads=2, dropout=0.0, seed=0):
    set_seed(seed)
    return GPTSelector(ModelConfig(version='v0', d_in=d, d_model=D, n_layers=layers, n_heads=heads, dropout=dropout, n_pool=n_pool)).eval()


def make_batch(B=4, G=3, S=3, K=9, n_pad=3, d=6, n_pool=60, seed=0):
    "A batch whose padded candidates are copies (features and pool id) of a valid one: masking is the only thing keeping them out"
    g = torch.Generator().manual_seed(seed)
    Kv = K - n_pad
    cands, ids = torch.randn(B, K, d, generator=g), torch.stack([torch.randperm(n_pool, generator=g)[:K] for _ in range(B)])
    cands[:, Kv:], ids[:, Kv:] = cands[:, :1], ids[:, :1]
    cand_mask = torch.ones(B, K, dtype=torch.bool); cand_mask[:, Kv:] = False
    beams = torch.stack([torch.stack([torch.randperm(Kv, generator=g)[:S] for _ in range(G)]) for _ in range(B)])
    return dict(query=torch.randn(B, d, generator=g), cands=cands, cand_ids=ids, cand_mask=cand_mask, beams=beams,
                beam_mask=torch.ones(B, G, dtype=torch.bool), scores=torch.rand(B, G, generator=g), query_ids=torch.arange(B))


def test_modules_import_without_transformers():
    code = ("import sys, lever_plus.v0, lever_plus.lora, lever_plus.sft\n"
            "assert 'transformers' not in sys.modules, 'importing lever_plus.v0 / lora / sft must not load transformers'")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize('strategy,k', [('greedy', 1), ('sample', 16), ('beam', 5)])
@pytest.mark.parametrize('seed', [0, 1])
def test_v0_generation_never_leaves_the_pool_nor_repeats(strategy, k, seed):
    m, b = make_v0(seed=seed), make_batch(seed=seed)
    for S in (3, 6):  # 6 = every valid candidate: the only way out would be a padded one or a repeat
        pos, _, ids = m.decode(b['query'], b['cands'], strategy, S, k=k, temperature=1.5, cand_mask=b['cand_mask'],
                               cand_ids=b['cand_ids'], generator=torch.Generator().manual_seed(seed))
        pos, ids = pos.reshape(4, -1, S), ids.reshape(4, -1, S)
        assert int(pos.max()) < 6, 'a padded candidate was picked'
        for q in range(4):
            valid = set(b['cand_ids'][q, :6].tolist())
            for row_p, row_i in zip(pos[q].tolist(), ids[q].tolist()):
                assert len(set(row_p)) == S, f'repeated position in {row_p}'
                assert set(row_i) <= valid and len(set(row_i)) == S, (row_i, valid)
                if S == 6: assert sorted(row_p) == list(range(6))


@pytest.mark.parametrize('T', [1.0, 0.5])
@pytest.mark.parametrize('strategy,k', [('greedy', 1), ('sample', 8), ('beam', 4)])
def test_v0_log_prob_is_the_sum_of_its_generation_steps(strategy, k, T):
    m, b = make_v0(), make_batch()
    S = 3
    pos, lp, _ = m.decode(b['query'], b['cands'], strategy, S, k=k, temperature=T, cand_mask=b['cand_mask'],
                          cand_ids=b['cand_ids'], generator=torch.Generator().manual_seed(3))
    pos3 = pos if pos.dim() == 3 else pos[:, None]  # (B, G, S)
    # the generation steps, recomputed by hand: GPT-2 on [QUERY, prefix], dot with the candidates / √D, mask, log-softmax
    with torch.no_grad():
        enc = m.encode(b['query'], b['cands'], b['cand_mask'], b['cand_ids'])
        steps = []
        for s in range(S):
            h = m.hidden(enc, pos3[..., :s])[:, :, -1]  # (B, G, D)
            logits = torch.einsum('bgd,bkd->bgk', h, enc.cands) / 16 ** 0.5 / T
            avail = enc.avail[:, None].expand_as(logits).clone()
            for t in range(s): avail.scatter_(-1, pos3[..., t:t + 1], False)
            steps.append(torch.log_softmax(logits.masked_fill(~avail, -1e4), -1).gather(-1, pos3[..., s:s + 1])[..., 0])
        steps = torch.stack(steps, -1)  # (B, G, S)
        tf = m.log_prob({**b, 'beams': pos3, 'beam_mask': None}, temperature=T, per_step=True)  # teacher forcing
    torch.testing.assert_close(tf, steps, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp.view(4, -1), steps.sum(-1), atol=1e-4, rtol=0)
    if strategy == 'greedy':  # greedy picks the arg-max of every teacher-forced step
        full, _ = m.step_log_probs(b['query'], b['cands'], pos3, b['cand_mask'], T, b['cand_ids'])
        assert torch.equal(full[:, 0].argmax(-1), pos)


def test_v0_needs_cand_ids_and_steps_through_the_generic_helper():
    m, b = make_v0(), make_batch()
    with pytest.raises(Exception, match='pass cand_ids'): m.step_log_probs(b['query'], b['cands'], b['beams'], b['cand_mask'])
    lp, av = selector_step_log_probs(m, b)
    ref, _ = m.step_log_probs(b['query'], b['cands'], b['beams'], b['cand_mask'], cand_ids=b['cand_ids'])
    assert torch.equal(lp, ref) and av.shape == (4, 3, 3, 9)


def test_v0_sft_from_the_cli_and_post_training(world, tmp_path):
    "lever_plus_sft --version v0 → a GPTSelector checkpoint; the post-training loop (RCE + offline and online GRPO) runs on it"
    r = run_script('lever_plus_sft', ['--beam_data', world/'beams_train.json', '--val_beam_data', world/'beams_val.json',
                                      '--embeddings', world, '--output_dir', tmp_path/'sft', '--version', 'v0', '--sft.epochs', 1,
                                      '--batch_size', 16, '--d_model', 16, '--n_layers', 1, '--n_heads', 2])
    assert r.returncode == 0, r.stderr
    m = load_selector(tmp_path/'sft'/'best')
    assert isinstance(m, GPTSelector) and (m.cfg.version, m.cfg.d_model, m.cfg.n_pool) == ('v0', 16, 400)
    assert json.loads((tmp_path/'sft'/'config.json').read_text())['model']['n_pool'] == 400
    from lever_plus.data import load_datasets
    from lever_plus.sim import SimScorer
    from lever_plus.train import post_train
    d = load_datasets(world/'beams_train.json', world, None, 5, world/'beams_val.json')
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = TrainConfig(model=m.cfg, data=DataConfig(K=d['K'], batch_size=16), curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=1),
                      grpo=GRPOConfig(online_samples=4), run=RunConfig(device='cpu'))
    res = post_train(cfg, m, d['train'], d['val'], tmp_path/'grpo', SimScorer.from_dir(world), progress=False)
    assert len(res['history']) == 2  # RCE epoch + GRPO epoch
    assert all(torch.isfinite(torch.tensor(h['val_info'])) for h in res['history'])
    assert any(not torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert isinstance(load_selector(tmp_path/'grpo'/'best'), GPTSelector)


def test_v2_lora_trains_only_adapters_and_merges_to_an_identical_v2(world, sft_ckpt, tmp_path):
    r = run_script('lever_plus_sft', ['--beam_data', world/'beams_train.json', '--val_beam_data', world/'beams_val.json',
                                      '--embeddings', world, '--output_dir', tmp_path/'lora', '--version', 'v2_lora', '--sft.epochs', 2,
                                      '--sft.lr', 0.01, '--batch_size', 16, '--base_ckpt', sft_ckpt, '--lora_rank', 4])
    assert r.returncode == 0, r.stderr
    base, lora = PointerSelector.from_pretrained(sft_ckpt), load_selector(tmp_path/'lora'/'best')
    assert (lora.cfg.version, lora.cfg.lora_rank, lora.cfg.d_model, lora.cfg.base_ckpt) == ('v2_lora', 4, 32, str(sft_ckpt))
    # the base weights (matrices, biases, LayerNorms) are bit-identical to the v2 checkpoint; only the adapters moved
    base_key = lambda k: k.replace('parametrizations.', '').replace('.original', '')
    sd = lora.state_dict()
    assert {base_key(k) for k in sd if not k.endswith(('.A', '.B'))} == set(base.state_dict())
    for k, v in sd.items():
        if not k.endswith(('.A', '.B')): assert torch.equal(v, base.state_dict()[base_key(k)]), k
    assert [id(p) for p in lora.parameters() if p.requires_grad] == [id(p) for p in lora_parameters(lora)]
    assert any(p.abs().sum() > 0 for p in lora_parameters(lora)[1::2]), 'the adapters did not train (B still 0)'
    # merged: a plain v2 with the same outputs, also through save_pretrained / PointerSelector.from_pretrained
    from lever_plus.data import load_datasets, make_loader
    b = next(iter(make_loader(load_datasets(world/'beams_test.json', world, val_frac=0)['train'], 16, shuffle=False)))
    merged = merge_lora(lora)
    assert type(merged) is PointerSelector and merged.cfg.version == 'v2' and not lora_parameters(merged)
    merged.save_pretrained(tmp_path/'merged')
    again = PointerSelector.from_pretrained(tmp_path/'merged')
    with torch.no_grad():
        ref = lora.log_prob(b)
        assert not torch.allclose(ref, base.eval().log_prob(b))  # the adapters changed the model
        for m in (merged.eval(), again):
            torch.testing.assert_close(m.log_prob(b), ref, atol=1e-5, rtol=0)
            assert torch.equal(m.requires_grad_(False).log_prob(b), ref)
            assert torch.equal(m.decode(b['query'], b['cands'], 'greedy', 2)[0], lora.decode(b['query'], b['cands'], 'greedy', 2)[0])


def test_load_selector_errors(tmp_path, sft_ckpt):
    with pytest.raises(CheckpointError, match='config.json: not found'): load_selector(tmp_path/'nothing')
    assert isinstance(load_selector(sft_ckpt.parent), PointerSelector)  # a run folder: its best/
    cfg = json.loads((sft_ckpt/'config.json').read_text())
    cfg['model'].update(version='v2_lora', lora_rank=2)  # says v2_lora, holds plain v2 weights
    (tmp_path/'bad').mkdir()
    (tmp_path/'bad'/'config.json').write_text(json.dumps(cfg))
    (tmp_path/'bad'/'model.safetensors').write_bytes((sft_ckpt/'model.safetensors').read_bytes())
    with pytest.raises(CheckpointError, match='weights do not match config.json'): load_selector(tmp_path/'bad')
