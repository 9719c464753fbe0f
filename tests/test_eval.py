"""Evaluation (`lever_plus.evaluate`), the explorer (`lever_plus.explore`) and the cached results the docs page shows.

Runs on a tiny simulated world (a few seconds): `run_eval` end to end with real SFT / post-trained
checkpoints, its errors, the seed pooling and paired gains against brute-force recomputation, the analytic
FLOP count against PyTorch's counter, and the size / consistency of nbs/results/ (what tools/make_results.py
writes and nbs/results.ipynb reads).
"""
import json, re
from pathlib import Path

import numpy as np
import pytest
import torch

from lever_plus.core import *
from lever_plus.beams import make_data
from lever_plus.data import load_datasets, load_embeddings
from lever_plus.model import PointerSelector
from lever_plus.sim import SimScorer
from lever_plus.evaluate import (BASELINES, run_eval, checkpoint_name, resolve_checkpoint, evaluate_methods, summarize_seeds,
                                 paired_gain, results_table, selector_flops, bootstrap_ci)
from lever_plus.explore import query_view, plot_query, save_views, load_views, explorer, pca_2d

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT/'nbs'/'results'
WORLD = dict(K=12, n_pool=300, n_train=40, n_val=10, n_test=30)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "A tiny world at shots 2 and 1, an SFT v2 checkpoint (1 epoch) and an RCE-only post-trained one"
    from lever_plus.sft import run_sft
    from lever_plus.train import run_post_train
    d = tmp_path_factory.mktemp('eval')
    for S in (2, 1): make_data(d/f'data{S}', seed=0, shot_num=S, progress=False, **WORLD)
    data = d/'data2'
    cfg = TrainConfig(model=ModelConfig(d_model=16, n_layers=1), sft=SFTConfig(epochs=1), data=DataConfig(batch_size=16),
                      curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=0))
    run_sft(data/'beams_train.json', data, d/'sft_v2', 'v2', cfg, data/'beams_val.json')
    run_post_train(d/'sft_v2'/'best', data/'beams_train.json', data, d/'v3_rce', cfg, data/'beams_val.json', None, progress=False)
    return d


def test_run_eval_end_to_end(world, tmp_path):
    res = run_eval([world/'sft_v2', world/'v3_rce'], world/'data2', [world/'data2', world/'data1'], shots=[1, 2], out_dir=tmp_path)
    names = ['random', 'text-sim top-k', 'img-sim top-k', 'mix-sim top-k', 'SFT v2', 'v3-offline, RCE only', 'beam oracle']
    for S in (1, 2):
        rows = {r['method']: r for r in res['shots'][S]}
        assert list(rows) == names
        assert rows['beam oracle']['frac_oracle'] == 1.0 and all(r['n'] == WORLD['n_test'] for r in rows.values())
        assert rows['beam oracle']['info'] >= max(r['info'] for r in rows.values()) - 1e-9   # nothing beats beam search here
    saved = json.loads((tmp_path/'eval.json').read_text())
    assert saved['split'] == 'test' and sorted(saved['shots']) == ['1', '2']
    assert saved['checkpoints']['SFT v2'].endswith('sft_v2/best')
    assert '### shot 2 (30 test queries)' in (tmp_path/'eval.md').read_text()
    for png in ('eval.png', 'eval_shots.png'):
        assert (tmp_path/png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_run_eval_matches_scorer(world):
    "The SFT row's mean is the scorer's mean over the SFT model's greedy picks, recomputed by hand"
    res = run_eval([world/'sft_v2'], world/'data2', shots=[2], baselines=())
    ds = load_datasets(world/'data2'/'beams_test.json', world/'data2', val_frac=0)['train']
    m, scorer = PointerSelector.from_pretrained(world/'sft_v2'/'best'), SimScorer.from_dir(world/'data2')
    infos = []
    for i in range(len(ds)):
        it = ds[i]
        _, _, ids = m.decode(it['query'][None], it['cands'][None], 'greedy', 2, cand_ids=it['cand_ids'][None])
        infos.append(float(scorer.info_score(torch.tensor([it['query_id']]), ids)[0]))
    (row,) = res['shots'][2]
    assert row['method'] == 'SFT v2' and row['frac_oracle'] is None
    assert abs(row['info'] - np.mean(infos)) < 1e-6


def test_checkpoint_names(world, tmp_path):
    assert checkpoint_name(world/'sft_v2') == 'SFT v2'
    assert checkpoint_name(world/'v3_rce') == 'v3-offline, RCE only'
    assert resolve_checkpoint(world/'v3_rce') == world/'v3_rce'/'best'
    # the same kind twice: names get the run folder to tell them apart
    res = run_eval([world/'sft_v2', world/'sft_v2'/'best'], world/'data2', shots=[2], baselines=('random',))
    assert [r['method'] for r in res['shots'][2]] == ['random', 'SFT v2 [sft_v2] #1', 'SFT v2 [sft_v2] #2']


def test_run_eval_errors(world, tmp_path):
    with pytest.raises(CheckpointError, match='no model.safetensors'): run_eval([tmp_path], world/'data2', shots=[2])
    with pytest.raises(BeamDataError, match='beam data not found'): run_eval([], world/'data2', tmp_path/'nope.json')
    with pytest.raises(ConfigError, match='two beam files with shot_num=2'): run_eval([], world/'data2', [world/'data2', world/'data2'])
    with pytest.raises(ConfigError, match='names for'): run_eval([world/'sft_v2'], world/'data2', names=['a', 'b'])
    other = tmp_path/'emb'
    emb = load_embeddings(world/'data2')
    from lever_plus.data import save_embeddings
    d_img = emb.meta['d_img']
    save_embeddings(other, emb.pool[:, :d_img], emb.pool[:, d_img:d_img + 8], emb.queries[:, :d_img], emb.queries[:, d_img:d_img + 8],
                    {'splits': emb.splits})
    with pytest.raises(ConfigError, match='no simulated world'): run_eval([], other, world/'data2')
    with pytest.raises(EmbeddingError, match='selector expects'):
        run_eval([world/'sft_v2'], other, world/'data2', scorer=SimScorer.from_dir(world/'data2'))


def _fake(rng, n, shift):
    b = rng.uniform(0, 1, n)
    row = lambda v: dict(per_query_info=v.tolist(), per_query_acc=(v > 0.5).astype(float).tolist())
    return {'a': row(b + shift), 'b': row(b), 'oracle': row(b + 1)}


def test_pooling_and_paired_gain():
    rng = np.random.default_rng(1)
    seeds = [_fake(rng, n, 0.05) for n in (50, 80, 200)]
    rows = {r['method']: r for r in summarize_seeds(seeds, oracle='oracle', n_boot=400)}
    means = [np.mean(s['b']['per_query_info']) for s in seeds]
    assert abs(rows['b']['info'] - np.mean(means)) < 1e-12                 # mean of seed means
    assert abs(rows['b']['info_seed_sd'] - np.std(means, ddof=1)) < 1e-12
    assert rows['b']['info_ci'][0] < rows['b']['info'] < rows['b']['info_ci'][1]
    assert abs(rows['oracle']['frac_oracle'] - 1) < 1e-12 and rows['oracle']['frac_oracle_ci'] == (1.0, 1.0)
    g = paired_gain(seeds, 'a', 'b', n_boot=400)
    assert abs(g['diff'] - 0.05) < 1e-12 and max(abs(x - 0.05) for x in g['diff_ci']) < 1e-12   # paired: no noise in a constant shift
    # unpaired CIs of the same two methods overlap heavily, the paired one excludes 0: pairing matters
    assert rows['a']['info_ci'][0] < rows['b']['info_ci'][1]
    assert g['p_better'] == 1.0 and g['rel_ci'][0] > 0
    # one seed = the plain per-query bootstrap
    one = summarize_seeds(seeds[:1], ['b'], oracle=None, n_boot=400, seed=3)[0]
    assert np.allclose(one['info_ci'], bootstrap_ci(seeds[0]['b']['per_query_info'], 400, seed=3))
    assert '| a |' in results_table(list(rows.values())) and 'info sd over seeds' in results_table(list(rows.values()))


@pytest.mark.parametrize('cfg,shape', [(ModelConfig(d_in=20, d_model=8, n_layers=2), (2, 3, 2, 10)),
                                       (ModelConfig(d_in=16, d_model=8, n_layers=1, n_heads=2), (3, 5, 3, 7)),
                                       (ModelConfig(d_in=6, d_model=4, version='v1'), (1, 2, 4, 5))])
def test_selector_flops(cfg, shape):
    from torch.utils.flop_counter import FlopCounterMode
    from torch.nn.attention import sdpa_kernel, SDPBackend
    B, G, S, K = shape
    m = PointerSelector(cfg)
    batch = dict(query=torch.randn(B, cfg.d_in), cands=torch.randn(B, K, cfg.d_in),
                 beams=torch.rand(B * G, K).argsort(-1)[:, :S].view(B, G, S))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        m.log_prob(batch).sum().backward()
    assert selector_flops(cfg, B, G, S, K, backward=True) == fc.get_total_flops()


def test_explorer(world, tmp_path):
    ds = load_datasets(world/'data2'/'beams_test.json', world/'data2', val_frac=0)['train']
    scorer = SimScorer.from_dir(world/'data2')
    sft = PointerSelector.from_pretrained(world/'sft_v2'/'best')
    views = [query_view(ds, i, scorer, {'SFT v2': sft, 'beam oracle': 'oracle'}) for i in range(3)]
    save_views(views, tmp_path/'v.json')
    assert load_views(tmp_path/'v.json') == views
    for v, i in zip(views, range(3)):
        it = ds[i]
        assert v['picks']['beam oracle']['ids'] == it['cand_ids'][it['beams'][0]].tolist()
        assert len(set(v['picks']['SFT v2']['ids'])) == 2 and set(v['picks']['SFT v2']['ids']) <= set(v['cand_ids'])
    fig = plot_query(views[0])
    assert len(fig.axes) == 3   # map, scores, colour bar
    w = explorer(views=views)
    w.children[0].value = 2
    assert w.result is views[2]
    xy, q = pca_2d(torch.randn(10, 4), torch.zeros(1, 4))
    assert xy.shape == (10, 2) and q.shape == (1, 2)
    import matplotlib.pyplot as plt; plt.close('all')


# ---------------------------------------------------------------------------------------------------------
# the cached results of the docs page

def test_results_cache():
    "nbs/results holds what nbs/results.ipynb reads and shows, small enough to commit"
    res = json.loads((RESULTS/'results.json').read_text())
    for k in ('main', 'main_table', 'gains', 'ablation', 'ablation_gains', 'online', 'runs', 'shot_sweep', 'seeds', 'command'):
        assert k in res, k
    assert not re.search(r'per_query_(info|acc)|query_ids', json.dumps(res)), 'per-query arrays belong in runs/results/eval, not in the committed JSON'
    assert (RESULTS/'results.json').stat().st_size < 150_000
    page = (ROOT/'nbs'/'results.ipynb').read_text()
    pngs = set(re.findall(r'\(results/([\w.]+\.png)\)', page))
    assert pngs, 'the results page shows no figure'
    for p in pngs:
        f = RESULTS/p
        assert f.is_file(), f'{f} is shown on the results page but missing: run tools/make_results.py report'
        assert f.stat().st_size < 120_000, f'{f} is {f.stat().st_size} bytes: keep figures ~100 KB'
    views = load_views(RESULTS/'explore.json')
    assert views and {'xy', 'beams', 'picks'} <= set(views[0])
    methods = [r['method'] for r in res['main']]
    assert methods[-1] == 'beam oracle' and 'SFT v2' in methods and 'v3-offline' in methods
    grid = json.loads((RESULTS/'grid.json').read_text())  # tools/make_grid.py
    assert len(grid['settings']) == 7 and all(len(v['seeds']) == 3 for v in grid['settings'].values()) and grid['recipe'] == 'v3-online'
    assert not re.search(r'per_query_(info|acc)|query_ids', json.dumps(grid)) and (RESULTS/'grid.json').stat().st_size < 150_000
