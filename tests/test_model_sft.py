"Invariants of the pointer selector (lever_plus.model) and its supervised training (lever_plus.sft)"
import json, subprocess, sys
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from lever_plus.core import ModelConfig, SFTConfig, TrainConfig, RunConfig, DataConfig, CheckpointError, BeamDataError, load_config, set_seed
from lever_plus.model import PointerSelector
from lever_plus.sft import sft_loss, sft_targets, smoothed_ce, train_sft, run_sft, evaluate_sft
from lever_plus.data import QueryRecord, BeamDataset, collate_beams, load_embeddings, read_beam_data, save_embeddings, write_beam_data

VERSIONS = ['v1', 'v2']


def make_model(version='v2', d=6, D=8, layers=2, heads=2, dropout=0.1, seed=0):
    set_seed(seed)
    return PointerSelector(ModelConfig(version=version, d_in=d, d_model=D, n_layers=layers, n_heads=heads, dropout=dropout)).eval()


def make_batch(B=3, G=4, S=3, K=7, d=6, seed=0, n_pad_cands=1):
    "Batch of the data contract: distinct positions per beam inside the valid candidates, one padded beam"
    g = torch.Generator().manual_seed(seed)
    Kv = K - n_pad_cands
    beams = torch.stack([torch.stack([torch.randperm(Kv, generator=g)[:S] for _ in range(G)]) for _ in range(B)])
    cand_mask = torch.ones(B, K, dtype=torch.bool); cand_mask[:, Kv:] = False
    beam_mask = torch.ones(B, G, dtype=torch.bool); beam_mask[0, -1] = False; beams[0, -1] = 0
    return dict(query=torch.randn(B, d, generator=g), cands=torch.randn(B, K, d, generator=g),
                cand_ids=torch.stack([torch.randperm(100, generator=g)[:K] for _ in range(B)]), beams=beams,
                beam_mask=beam_mask, cand_mask=cand_mask, query_ids=torch.arange(B),
                scores=torch.rand(B, G, generator=g).sort(-1, descending=True).values.masked_fill(~beam_mask, 0))


@pytest.mark.parametrize('version', VERSIONS)
@pytest.mark.parametrize('T', [1.0, 0.4])
def test_log_prob_equals_sum_of_step_log_softmax_along_greedy_path(version, T):
    m, b = make_model(version), make_batch()
    pos, lp = m.decode(b['query'], b['cands'], 'greedy', shot_num=3, temperature=T, cand_mask=b['cand_mask'])
    # recompute the path by hand: step distribution, arg-max, mask, state update
    enc = m.encode(b['query'], b['cands'], b['cand_mask'])
    h, avail, total = enc.state[:, None], enc.avail[:, None].clone(), torch.zeros(3)
    for s in range(3):
        qk = F.normalize(m.q_proj(h), dim=-1)
        logits = m.cfg.logit_scale * torch.einsum('bgd,bkd->bgk', qk, enc.keys) / T
        step = torch.log_softmax(logits.masked_fill(~avail, -1e4), -1)[:, 0]  # (B, K)
        assert torch.equal(step.argmax(-1), pos[:, s])
        total += step.gather(1, pos[:, s:s+1])[:, 0]
        avail[torch.arange(3), 0, pos[:, s]] = False
        h = m.update(h, enc.cands[torch.arange(3), pos[:, s]][:, None])
    torch.testing.assert_close(lp, total, atol=1e-5, rtol=0)
    lp_tf = m.log_prob({'query': b['query'], 'cands': b['cands'], 'cand_mask': b['cand_mask'], 'beams': pos[:, None]}, temperature=T)
    torch.testing.assert_close(lp_tf[:, 0], lp, atol=1e-5, rtol=0)


@pytest.mark.parametrize('version', VERSIONS)
def test_step_probabilities_sum_to_one_and_are_zero_where_unpickable(version):
    m, b = make_model(version), make_batch()
    lp, av = m.step_log_probs(b['query'], b['cands'], b['beams'], b['cand_mask'], temperature=0.7)
    p = lp.exp().detach()
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 4, 3))
    assert p[~av].abs().max().item() == 0.0
    for s in range(1, 3):  # earlier picks of the beam are unpickable at step s
        picked = b['beams'][:, :, :s]
        assert not av[:, :, s].gather(-1, picked).any()


@pytest.mark.parametrize('version', VERSIONS)
def test_picked_and_padded_candidates_are_never_picked(version):
    m, b = make_model(version), make_batch(K=7, n_pad_cands=2)
    pos, _ = m.decode(b['query'], b['cands'], 'sample', shot_num=5, k=300, temperature=100.0, cand_mask=b['cand_mask'],
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(pos.sort(-1).values, torch.arange(5).expand(3, 300, 5))  # a permutation of the 5 valid ones
    pos_b, lp_b = m.decode(b['query'], b['cands'], 'beam', shot_num=3, k=8, cand_mask=b['cand_mask'])
    assert (pos_b < 5).all() and all(len(set(r)) == 3 for r in pos_b.view(-1, 3).tolist())
    assert torch.isfinite(lp_b).all()


@pytest.mark.parametrize('version', VERSIONS)
def test_permuting_the_pool_permutes_the_choices(version):
    m, b = make_model(version), make_batch()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    for strategy, k in (('greedy', 1), ('beam', 4)):
        p1, l1, i1 = m.decode(b['query'], b['cands'], strategy, 3, k, cand_mask=b['cand_mask'], cand_ids=b['cand_ids'])
        p2, l2, i2 = m.decode(b['query'], b['cands'][:, perm], strategy, 3, k, cand_mask=b['cand_mask'][:, perm],
                              cand_ids=b['cand_ids'][:, perm])
        assert torch.equal(i1, i2) and torch.equal(perm[p2], p1)
        torch.testing.assert_close(l1, l2, atol=1e-5, rtol=0)
    inv = torch.argsort(perm)
    pb = {**b, 'cands': b['cands'][:, perm], 'cand_mask': b['cand_mask'][:, perm], 'beams': inv[b['beams']]}
    torch.testing.assert_close(m.log_prob(pb), m.log_prob(b), atol=1e-5, rtol=0)


@pytest.mark.parametrize('version', VERSIONS)
def test_batched_log_prob_equals_separate_calls(version):
    m, b = make_model(version), make_batch()
    full = m.log_prob(b, per_step=True)
    for g in range(4):
        one = m.log_prob({**b, 'beams': b['beams'][:, g:g+1], 'beam_mask': b['beam_mask'][:, g:g+1]}, per_step=True)
        torch.testing.assert_close(full[:, g:g+1], one, atol=1e-5, rtol=0)
    assert full[0, -1].abs().max().item() == 0.0  # padded beam


def test_beam_search_matches_brute_force():
    m = make_model('v2', dropout=0.0)
    g = torch.Generator().manual_seed(5)
    q, c = torch.randn(2, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    seqs = torch.tensor([[i, j] for i in range(5) for j in range(5) if i != j])  # (20, 2)
    ref = m.log_prob({'query': q, 'cands': c, 'beams': seqs[None].expand(2, 20, 2)})
    pos, lp = m.decode(q, c, 'beam', shot_num=2, k=20)
    torch.testing.assert_close(lp, ref.sort(-1, descending=True).values, atol=1e-5, rtol=0)
    top = m.log_prob({'query': q, 'cands': c, 'beams': pos})
    torch.testing.assert_close(top, lp, atol=1e-5, rtol=0)


def test_dropout_mask_is_shared_by_the_beams_of_a_pool_and_eval_is_deterministic():
    m, b = make_model('v2', dropout=0.3), make_batch()
    same = {**b, 'beams': b['beams'][:, :1].expand(3, 4, 3), 'beam_mask': None}
    m.train()
    r = m.log_prob(same).detach()
    torch.testing.assert_close(r, r[:, :1].expand(3, 4), atol=1e-6, rtol=0)
    m.eval()
    assert torch.equal(m.log_prob(b), m.log_prob(b))


@pytest.mark.parametrize('version', VERSIONS)
def test_save_load_identical_outputs(version, tmp_path):
    m, b = make_model(version), make_batch()
    m.save_pretrained(tmp_path/'ck', TrainConfig(sft=SFTConfig(lr=5e-4)))
    assert json.loads((tmp_path/'ck'/'config.json').read_text())['model']['version'] == version
    assert not any(p.suffix in ('.pt', '.pkl', '.bin') for p in (tmp_path/'ck').iterdir())  # no pickle
    m2 = PointerSelector.from_pretrained(tmp_path/'ck')
    assert not m2.training and m2.cfg == m.cfg
    assert torch.equal(m2.log_prob(b), m.log_prob(b))
    for strategy in ('greedy', 'beam'):
        o1 = m.decode(b['query'], b['cands'], strategy, 3, 3, cand_mask=b['cand_mask'])
        o2 = m2.decode(b['query'], b['cands'], strategy, 3, 3, cand_mask=b['cand_mask'])
        assert all(torch.equal(x, y) for x, y in zip(o1, o2))
    assert load_config(tmp_path/'ck'/'config.json').sft.lr == 5e-4


def test_bad_inputs_give_clear_errors(tmp_path):
    m, b = make_model(), make_batch()
    with pytest.raises(BeamDataError, match='positions outside'): m.log_prob({**b, 'beams': b['beams'] + 50})
    with pytest.raises(CheckpointError, match='not found'): PointerSelector.from_pretrained(tmp_path/'missing')
    m.save_pretrained(tmp_path/'ck')
    (tmp_path/'ck'/'model.safetensors').write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match='truncated'): PointerSelector.from_pretrained(tmp_path/'ck')


def test_gated_state_update():
    m = make_model('v1', dropout=0.0)
    h, p = F.normalize(torch.randn(2, 3, 8), dim=-1), F.normalize(torch.randn(2, 3, 8), dim=-1)
    with torch.no_grad():
        m.gate.weight.zero_(); m.gate.bias.zero_()  # g = 1/2
        torch.testing.assert_close(m.update(h, p), F.normalize(h + p, dim=-1))
        m.gate.bias.fill_(30.)  # g = 1: keep the state
        torch.testing.assert_close(m.update(h, p), h)
        m.gate.bias.fill_(-30.)  # g = 0: the state becomes the pick
        torch.testing.assert_close(m.update(h, p), p)


def test_upstream_capacity():
    assert PointerSelector(ModelConfig(d_in=512, d_model=256, n_layers=1)).n_params == 657_664


# ---------------------------------------------------------------- SFT

def _tiny_files(d, n_q=20, n_pool=30, K=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pi, pt, qi, qt = (F.normalize(torch.randn(n, 4, generator=g), dim=1) for n in (n_pool, n_pool, n_q, n_q))
    save_embeddings(d, pi, pt, qi, qt, {'model': 'test'})
    recs = {}
    for q in range(n_q):
        sim = torch.cat([qi[q], qt[q]]) @ torch.cat([pi, pt], 1).T
        pool = torch.randperm(n_pool, generator=g)[:K].tolist()  # shuffled: positions != ids
        order = sorted(pool, key=lambda i: -float(sim[i]))
        recs[q] = QueryRecord(q, [order[:2], order[2:4], [order[-1], order[0]]], [0.5, 0.4, 0.1], candidate_pool_ids=pool)
    write_beam_data(Path(d)/'beams.json', recs)
    return recs


def test_sft_labels_are_positions_of_the_beam_ids_in_the_pool(tmp_path):
    recs = _tiny_files(tmp_path)
    ds = BeamDataset(read_beam_data(tmp_path/'beams.json'), load_embeddings(tmp_path), 8, 2, 3)
    b = collate_beams([ds[i] for i in range(len(ds))])
    tgt = sft_targets(b)
    assert b['cand_ids'].gather(1, tgt).tolist() == [recs[q].sequences[0] for q in range(20)]
    # the loss is the label-smoothed CE at exactly those positions
    m = make_model('v2', d=8, dropout=0.0)
    loss, _ = sft_loss(m, b, SFTConfig(label_smoothing=0.0))
    ref = -m.log_prob({**b, 'beams': tgt[:, None], 'beam_mask': None})[:, 0].mean() / 2
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=0)


def test_sft_target_is_the_best_valid_beam_whatever_its_index():
    b = make_batch(B=3, G=4)
    b['scores'] = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.5, 0.1, 0.7, 0.0], [0.2, 0.1, 0.0, 0.3]])
    b['beam_mask'][2, 3] = False  # the best score of query 2 is a padded beam
    assert torch.equal(sft_targets(b), b['beams'][torch.arange(3), torch.tensor([1, 2, 0])])
    m = make_model('v2', dropout=0.0)
    loss, _ = sft_loss(m, b, SFTConfig(label_smoothing=0.0))
    ref = -m.log_prob({**b, 'beams': sft_targets(b)[:, None], 'beam_mask': None})[:, 0].mean() / 3
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=0)


def test_smoothed_ce_ignores_unpickable_candidates():
    logits, y = torch.randn(4, 6), torch.randint(0, 5, (4,))
    av = torch.ones(4, 6, dtype=torch.bool); av[:, 5] = False
    lp = torch.log_softmax(logits.masked_fill(~av, -1e4), -1)
    ref = F.cross_entropy(logits[:, :5], y, label_smoothing=0.2, reduction='none')  # same CE over the 5 pickable
    torch.testing.assert_close(smoothed_ce(lp, av, y, 0.2), ref, atol=1e-5, rtol=0)


def test_sft_loss_falls_and_checkpoints(tmp_path):
    recs = _tiny_files(tmp_path)
    cfg = TrainConfig(model=ModelConfig(d_model=16, n_layers=1), sft=SFTConfig(epochs=4, lr=1e-2),
                      data=DataConfig(batch_size=5, val_frac=0.2), run=RunConfig(log_every=1))
    logs = []
    res = run_sft(tmp_path/'beams.json', tmp_path, tmp_path/'run', cfg=cfg, log=logs.append)
    steps = [r['loss'] for r in logs if r['kind'] == 'step']
    assert len(steps) == 4 * 4 and sum(steps[-4:]) < sum(steps[:4])
    assert res['config'].model.version == 'v2' and res['n_train'] == 16 and res['n_val'] == 4
    for d in ('best', 'last'):
        assert sorted(p.name for p in (tmp_path/'run'/d).iterdir()) == ['config.json', 'metrics.json', 'model.safetensors']
    best = min(res['history'], key=lambda r: r['val_loss'])
    assert res['best_epoch'] == best['epoch']


def test_importing_sft_does_not_import_transformers():
    code = 'import sys, lever_plus.sft, lever_plus.model; assert "transformers" not in sys.modules'
    subprocess.run([sys.executable, '-c', code], check=True)
