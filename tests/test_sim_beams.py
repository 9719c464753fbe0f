"Outside-in tests of the simulated world, the scorer and make_data (lever_plus.sim, lever_plus.beams)"
import json
import pytest
import torch
from safetensors.torch import load_file
from lever_plus.core import ConfigError, EmbeddingError, LeverPlusError
from lever_plus.sim import SimScorer, Scorer, load_world, make_world
from lever_plus.beams import beam_search, make_data, sample_candidates, similarity_topk

TINY = dict(n_pool=150, n_train=12, n_val=4, n_test=4)

@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    summary = make_data(d, seed=7, sampler='mix', shot_num=3, K=10, beam_width=4, progress=False, **TINY)
    return d, summary

def test_files_follow_the_embedding_contract(data_dir):
    d, summary = data_dir
    assert sorted(p.name for p in d.iterdir() if p.name != '.lever_plus.lock') == sorted(summary['files']) == sorted(
        ['embeddings.safetensors', 'meta.json', 'world.safetensors', 'world.json', 'beams_train.json', 'beams_val.json', 'beams_test.json'])
    emb = load_file(str(d/'embeddings.safetensors'))
    assert set(emb) == {'pool_img', 'pool_txt', 'query_img', 'query_txt'}
    assert emb['pool_img'].shape == (150, 64) and emb['query_txt'].shape == (20, 64)
    assert all(v.dtype == torch.float32 for v in emb.values())
    for v in emb.values(): assert torch.allclose(v.norm(dim=-1), torch.ones(len(v)), atol=1e-5)
    meta = json.loads((d/'meta.json').read_text())
    assert meta['format'] == 'lever_plus.embeddings/1' and isinstance(meta['model'], str)
    assert (meta['d_img'], meta['d_txt'], meta['n_pool'], meta['n_query']) == (64, 64, 150, 20)
    assert meta['splits'] == {'train': list(range(12)), 'val': [12, 13, 14, 15], 'test': [16, 17, 18, 19]}

def test_beam_files_follow_the_upstream_format(data_dir):
    d, _ = data_dir
    meta = json.loads((d/'meta.json').read_text())
    for split, ids in meta['splits'].items():
        recs = json.loads((d/f'beams_{split}.json').read_text())
        assert sorted(map(int, recs)) == ids
        for key, r in recs.items():
            q = int(key)
            assert len(r['id_list']) == len(r['score_list']) == len(r['vqa_acc_list']) == 4
            assert len(r['candidate_pool_ids']) == 10 == len(set(r['candidate_pool_ids']))
            assert r['score_list'] == sorted(r['score_list'], reverse=True)
            assert all(0 <= a <= 1 for a in r['vqa_acc_list'])
            for beam in r['id_list']:
                assert len(beam) == 4 and beam[-1] == q                      # 3 shots, then the query id
                assert len(set(beam[:-1])) == 3 and set(beam[:-1]) <= set(r['candidate_pool_ids'])

def test_same_seed_same_bytes_and_scorer_round_trip(data_dir, tmp_path):
    d, summary = data_dir
    make_data(tmp_path, seed=7, sampler='mix', shot_num=3, K=10, beam_width=4, progress=False, **TINY)
    for f in summary['files']: assert (d/f).read_bytes() == (tmp_path/f).read_bytes(), f
    sc = SimScorer.from_dir(d)
    r = json.loads((d/'beams_test.json').read_text())['17']
    shots = torch.tensor([b[:-1] for b in r['id_list']])
    assert torch.allclose(sc.info_score(torch.full((4,), 17), shots), torch.tensor(r['score_list']), atol=1e-5)
    assert torch.equal(load_world(d).query_prior, make_world(7, **TINY).query_prior)

def test_empty_sequence_scores_zero_and_order_matters():
    w = make_world(0, **TINY); sc = SimScorer(w)
    q = torch.arange(20)
    assert torch.equal(sc.info_score(q, torch.full((20, 2), -1)), torch.zeros(20))
    seq = torch.stack([torch.arange(20), torch.arange(20, 40)], 1)
    assert (sc.info_score(q, seq) != sc.info_score(q, seq.flip(1))).all()

@pytest.mark.parametrize('kwargs, msg', [
    (dict(K=10, shot_num=11), 'shot_num (11) must be in [1, K=10]'),
    (dict(shot_num=0, K=10), 'shot_num (0) must be in [1, K=10]'),
    (dict(sampler='knn'), "unknown sampler 'knn'; valid: 'rand', 'text_sim', 'img_sim', 'mix'"),
    (dict(K=151), 'K (151) must be in [1, n_pool=150]'),
    (dict(beam_width=0), 'beam_width must be >= 1'),
    (dict(n_train=0), 'world.n_train must be >= 1'),
    (dict(n_types=0), 'world.n_types must be >= 1'),
])
def test_bad_arguments_get_clear_errors(tmp_path, kwargs, msg):
    kw = {**TINY, 'progress': False, **kwargs}
    with pytest.raises(ConfigError) as e: make_data(tmp_path/'x', **kw)
    assert msg in str(e.value)
    assert not (tmp_path/'x').exists()                                        # checked before any work

def test_unknown_world_field_and_missing_dir(tmp_path):
    with pytest.raises(ConfigError, match='did you mean `n_pool`'): make_data(tmp_path, n_pol=10, progress=False)
    with pytest.raises(EmbeddingError, match='world.safetensors'): SimScorer.from_dir(tmp_path)

def test_beam_search_runs_with_any_scorer():
    class Fixed(Scorer):
        "P(gt) grows with the pool ids used: the best pair is (K-2, K-1)"
        n_query, n_pool = 2, 10
        def prob(self, q, shots): return ((shots + 1) * torch.arange(1, shots.shape[1] + 1)).sum(-1).float() / 100
        def vqa_acc(self, q, shots): return torch.zeros(len(q))
    beams, scores = beam_search(Fixed(), torch.tensor([0, 1]), torch.arange(10).repeat(2, 1), shot_num=2, beam_width=3)
    assert beams[:, 0].tolist() == [[8, 9], [8, 9]] and (scores[:, :-1] >= scores[:, 1:]).all()
    with pytest.raises(LeverPlusError, match='candidate ids must be pool ids'):
        beam_search(Fixed(), torch.tensor([0]), torch.tensor([[3, 11]]))

def test_baselines_reuse_the_stored_features(data_dir):
    d, _ = data_dir
    emb = load_file(str(d/'embeddings.safetensors'))
    q = torch.arange(20)
    cand = sample_candidates(emb, q, K=10, sampler='img_sim')
    top = similarity_topk(emb, q, cand, shot_num=2, modality='img')
    nn = (emb['query_img'] @ emb['pool_img'].T).argmax(-1)
    assert torch.equal(top[:, -1], nn)                                          # nearest neighbour sits last
