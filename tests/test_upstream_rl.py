"""Upstream Lever-Plus's three RL-format files (tests/fixtures/upstream/, written by upstream's own generators) train
through `lever_plus_sft` and `lever_plus_grpo` with no extra flags, against upstream's `emb.pt` ([400, 512], queries and
candidates in one id space, no simulated world: validation by loss). Broken variants exit 2 with one line naming the
file, the query and the field, and write nothing."""
import json, math, sys, warnings
from pathlib import Path
import pytest
from lever_plus import cli
from conftest import run_script

UP = Path(__file__).resolve().parent/'fixtures'/'upstream'
EMB = UP/'emb.pt'
SFT = ['--epochs', 1, '--batch_size', 8, '--d_model', 16, '--n_layers', 1, '--no_progress']
GRPO = ['--rce_epochs', 1, '--grpo_epochs', 1, '--batch_size', 8, '--no_progress']
REWARD = 'vqa_correct+vqa_acc_score'
# file → kept trajectories, dropped 'fallback' ones, G = the largest group, where the pools come from, K
EXPECT = {'rl_k64.json': (316, 35, 11, 'file', 64), 'rl_generate_rl_data.json': (349, 38, 12, 'used', 19),
          'rl_balanced.json': (20, 0, 4, 'used', 8)}


@pytest.mark.parametrize('name', sorted(EXPECT))
def test_upstream_rl_file_trains_with_no_flags(name, tmp_path):
    kept, fallback, G, pool, K = EXPECT[name]
    r = run_script('lever_plus_sft', ['--beam_data', UP/name, '--embeddings', EMB, '--output_dir', tmp_path/'sft', *SFT])
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)['data'][0]
    assert (rep['kept'], rep['dropped'], rep['n_beams'], rep['pool'], rep['score_key']) == (
        kept, {'failed': 0, 'fallback': fallback, 'beyond_n_beams': 0}, G, pool, REWARD)
    lines = r.stderr.splitlines()
    assert lines and all(l.startswith('warning: ') for l in lines), r.stderr  # each warning one line, nothing else
    assert any(f"{name}: " in l and "scored by upstream's reward vqa_correct + vqa_acc_score" in l for l in lines), r.stderr
    assert any(f'{name}: kept {kept} of ' in l and f"{fallback} 'fallback'" in l for l in lines), r.stderr
    data = json.loads((tmp_path/'sft'/'config.json').read_text())['data']
    assert (data['K'], data['n_beams'], data['score_key']) == (K, G, REWARD)

    r = run_script('lever_plus_grpo', ['--sft_ckpt', tmp_path/'sft'/'best', '--beam_data', UP/name, '--embeddings', EMB,
                                       '--output_dir', tmp_path/'v3', *GRPO])
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s['data'][0]['kept'], s['skipped_steps'], s['last_epoch']['epoch']) == (kept, 0, 2)
    assert math.isfinite(s['last_epoch']['train_loss'])
    steps = [json.loads(l) for l in (tmp_path/'v3'/'metrics.jsonl').read_text().splitlines()]
    assert {x['stage'] for x in steps if x['kind'] == 'step'} == {'rce/all', 'grpo/top3'}
    assert json.loads((tmp_path/'v3'/'config.json').read_text())['data']['n_beams'] == G


# ---------------------------------------------------------------------------------------------------------------
# in-process runs of the console scripts (what the installed scripts run), for the flags and the bad inputs

def console(monkeypatch, capsys, entry, argv) -> tuple:
    "Run a console-script entry point in-process → (exit status, stdout, stderr)"
    monkeypatch.setattr(sys, 'argv', [entry.__name__, *map(str, argv)])
    capsys.readouterr()
    try: entry(); rc = 0
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_flags_choose_score_fallback_group_and_pool(tmp_path, monkeypatch, capsys):
    "--keep_fallback, --n_beams, --rl_pool and --score_key reach the data through config fields"
    def sft(name, *extra):
        rc, out, err = console(monkeypatch, capsys, cli.sft, ['--beam_data', UP/name, '--embeddings', EMB, '--overwrite',
                                                             '--output_dir', tmp_path/'sft', *SFT, *extra])
        assert rc == 0, err
        return json.loads(out)['data'][0], json.loads((tmp_path/'sft'/'config.json').read_text())['data']
    rep, _ = sft('rl_k64.json', '--keep_fallback', 'true')
    assert (rep['kept'], rep['dropped']['fallback'], rep['n_beams']) == (351, 0, 12)
    rep, data = sft('rl_generate_rl_data.json', '--n_beams', 5, '--rl_pool', 'random')
    assert (rep['kept'], rep['dropped']['beyond_n_beams'], rep['pool'], data['K'], data['n_beams']) == (150, 199, 'random', 64, 5)
    rep, data = sft('rl_balanced.json', '--data.score_key', 'vqa_acc_score')
    assert (rep['score_key'], data['score_key']) == ('vqa_acc_score', 'vqa_acc_score')
    rc, out, err = console(monkeypatch, capsys, cli.sft, ['--beam_data', UP/'rl_k64.json', '--embeddings', EMB,
                                                         '--output_dir', tmp_path/'bad', '--score_key', 'beam_score', *SFT])
    assert rc == 2 and err.startswith(f'error: {UP/"rl_k64.json"}: query "197", field `pointer_candidates[3].beam_score`: missing'), err
    assert err.count('\n') == 1 and not (tmp_path/'bad').exists()


def _variant(tmp, src, name, change) -> Path:
    "A copy of fixture `src` changed in place by `change(records)`, written as `name`"
    d = json.loads((UP/src).read_text())
    change(d)
    p = tmp/name
    p.write_text(json.dumps(d))
    return p

def _traj(d, q='197', j=0): return d[q]['pointer_candidates'][j]
def _set(**kw): return lambda d: _traj(d).update(kw)
def _all_failed(d):
    for k, r in d.items():
        if k != '_meta':
            for c in r['pointer_candidates']: c['eval_failed'] = True

# name → (fixture, change, the message after "error: PATH: ")
BAD = {
    'pointer_outside_pool': ('rl_k64.json', _set(pointer=[42, 64]),
                             'query "197", field `pointer_candidates[0].pointer`: position 64 is outside the candidate pool (K=64'),
    'pointer_global_disagrees': ('rl_k64.json', _set(pointer_global=[85, 308]),
                                 'query "197", field `pointer_candidates[0].pointer_global`: [85, 308] disagrees with candidate_pool_ids[pointer] = [85, 307]'),
    'pointer_pos_disagrees': ('rl_generate_rl_data.json', _set(pointer_pos=[350, 273]),
                              'query "197", field `pointer_candidates[0].pointer_pos`: [350, 273] disagrees with `pointer` [350, 272]'),
    'id_beyond_emb_rows': ('rl_generate_rl_data.json', _set(pointer=[350, 400], pointer_pos=None),
                           'query "197", field `pointer_candidates[0].pointer`: the trajectory holds id 400 but the pool has only 400 rows'),
    'pool_id_beyond_emb_rows': ('rl_k64.json', lambda d: d['388']['candidate_pool_ids'].__setitem__(0, 400),
                                'query "388", field `candidate_pool_ids`: the candidate pool holds id 400 but the pool has only 400 rows'),
    'every_trajectory_failed': ('rl_balanced.json', _all_failed,
                                "every query was skipped: none of its 20 trajectories is usable (20 failed (eval_failed / 'error'), 0 'fallback'"),
}


@pytest.fixture(scope='module')
def sft_up(tmp_path_factory) -> Path:
    "A tiny SFT selector on upstream's balanced file and emb.pt (d_in 512)"
    from lever_plus.core import TrainConfig, ModelConfig, SFTConfig, DataConfig
    from lever_plus.sft import run_sft
    cfg = TrainConfig(model=ModelConfig(d_model=16, n_layers=1), sft=SFTConfig(epochs=1), data=DataConfig(batch_size=8))
    with pytest.warns(UserWarning): res = run_sft(UP/'rl_balanced.json', EMB, tmp_path_factory.mktemp('sft_up'), 'v2', cfg)
    return Path(res['best_dir'])


@pytest.mark.parametrize('cmd', ['sft', 'grpo'])
@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_upstream_rl_file_exits_2_with_one_line(case, cmd, sft_up, tmp_path, monkeypatch, capsys):
    src, change, msg = BAD[case]
    p = _variant(tmp_path, src, f'{case}.json', change)
    argv = ['--beam_data', p, '--embeddings', EMB, '--output_dir', tmp_path/'out']
    argv += SFT if cmd == 'sft' else ['--sft_ckpt', sft_up, *GRPO]
    rc, _, err = console(monkeypatch, capsys, getattr(cli, cmd), argv)
    assert rc == 2 and err.startswith(f'error: {p}: {msg}') and err.count('\n') == 1, err
    assert not (tmp_path/'out').exists()


def test_read_pools_of_every_layout(tmp_path):
    "The helper behind a selection command: {query: pool} in file order, pools by the training rules"
    from lever_plus.data import read_pools, write_query_pools, load_embeddings
    for name, (_, _, _, pool, K) in EXPECT.items():
        keys = [int(k) for k in json.loads((UP/name).read_text()) if k != '_meta']
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always'); pools = read_pools(UP/name, load_embeddings(EMB))
        assert list(pools) == keys and max(map(len, pools.values())) == K
        assert [str(x.message).split(': ', 1)[1][:12] for x in w] == ([] if name == 'rl_balanced.json' else ['skipped 0 fa'])  # scores are not read
    assert read_pools(UP/'rl_balanced.json')[0] == [30, 142, 165, 193, 207, 217, 308, 398]
    qp = write_query_pools(tmp_path/'q.json', {7: [1, 2, 3], 2: [4, 5, 6]})
    assert read_pools(qp) == {7: [1, 2, 3], 2: [4, 5, 6]} and list(read_pools(qp)) == [7, 2]

