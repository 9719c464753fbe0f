"lever_plus_select from outside: selections in upstream's layout, keyed, beam decoding, and bad inputs (exit 2, one line)"
import json
from pathlib import Path
import torch
from conftest import run_script
from lever_plus.model import load_selector
from lever_plus.data import load_embeddings, read_beam_data


def _greedy_ids(ckpt, world, beams):
    "What the selector's own greedy decode picks for each query of `beams`, in file order"
    m, st, recs = load_selector(ckpt), load_embeddings(world), read_beam_data(beams)
    out = []
    for q, r in recs.items():
        c = torch.tensor([r.candidate_pool_ids])
        out.append(m.decode(st.queries[[q]], st.pool[c], 'greedy', len(r.sequences[0]), cand_ids=c)[2][0].tolist())
    return out


def test_select_writes_upstream_layout(world, sft_ckpt, tmp_path):
    out = tmp_path/'v3_icd_predictions.json'
    r = run_script('lever_plus_select', ['--ckpt', sft_ckpt, '--embeddings', world, '--queries', world/'beams_test.json', '--output', out])
    assert r.returncode == 0, r.stderr
    test_ids = json.loads(out.read_text())
    assert test_ids == _greedy_ids(sft_ckpt, world, world/'beams_test.json')
    assert json.loads(r.stdout)['n_queries'] == len(test_ids) == 16
    r = run_script('lever_plus_select', ['--ckpt', sft_ckpt, '--embeddings', world, '--queries', world/'beams_test.json', '--output', out])
    assert r.returncode == 2 and 'exists' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json.loads(out.read_text()) == test_ids  # untouched
    keyed = tmp_path/'keyed.json'
    r = run_script('lever_plus_select', ['--ckpt', sft_ckpt.parent, '--embeddings', world, '--queries', world/'beams_test.json', '--output', keyed,
                                         '--keyed', '--strategy', 'beam', '--beam_width', 8, '--shot_num', 3])
    assert r.returncode == 0, r.stderr
    k = json.loads(keyed.read_text())
    recs = read_beam_data(world/'beams_test.json')
    assert list(k) == [str(q) for q in recs] and all(len(v) == 3 and set(v) <= set(recs[int(q)].candidate_pool_ids) for q, v in k.items())


def test_select_bad_inputs(world, sft_ckpt, tmp_path):
    base = ['--ckpt', sft_ckpt, '--embeddings', world, '--output', tmp_path/'o.json']
    d = json.loads((world/'beams_test.json').read_text())
    q0 = next(iter(d))
    bad = dict(d); bad[q0] = dict(d[q0], candidate_pool_ids=[10**6] + d[q0]['candidate_pool_ids'][1:])
    (tmp_path/'bad.json').write_text(json.dumps(bad))
    for args, expect in ((['--queries', tmp_path/'missing.json'], 'missing.json'), (['--queries', tmp_path/'bad.json'], '1000000'),
                         (['--queries', world/'beams_test.json', '--shot_num', 0], '--shot_num must be >= 1')):
        r = run_script('lever_plus_select', [*base, *args])
        assert r.returncode == 2 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.returncode, r.stderr)
    assert not (tmp_path/'o.json').exists()


FIX = Path(__file__).parent/'fixtures'/'upstream'


def test_select_upstream_checkpoints_give_upstreams_picks(tmp_path):
    "On upstream's own files, lever_plus_select writes exactly the ids upstream's model picks (`greedy_ids` of the fixtures)"
    for ckpt, io in (('v2_gated.ckpt', 'v2_gated_io.json'), ('v2_static.ckpt', 'v2_static_io.json'), ('v3_grpo_epoch1.pt', 'v2_gated_io.json')):
        d = json.loads((FIX/io).read_text())
        pools = tmp_path/f'{ckpt}.pools.json'
        pools.write_text(json.dumps({str(q): {'candidate_pool_ids': p} for q, p in zip(d['query_ids'], d['candidate_pool_ids'])}))
        out = tmp_path/f'{ckpt}.json'
        r = run_script('lever_plus_select', ['--ckpt', FIX/ckpt, '--embeddings', FIX/'emb.pt', '--queries', pools, '--output', out, '--shot_num', 2])
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text()) == d['greedy_ids'], ckpt
    r = run_script('lever_plus_select', ['--ckpt', FIX/'v2_gated.ckpt', '--embeddings', FIX/'emb.pt', '--queries', pools, '--output', tmp_path/'x.json'])
    assert r.returncode == 2 and 'pass --shot_num' in r.stderr  # an upstream file does not record it
