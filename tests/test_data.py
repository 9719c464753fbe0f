"Data layer from the outside: files written to tmp_path, read back, batched (lever_plus.data)"
import json, os, warnings
import pytest, torch
import torch.nn.functional as F
from lever_plus.core import BeamDataError, EmbeddingError
from lever_plus.data import (QueryRecord, read_beam_data, write_beam_data, write_rl_data, save_embeddings,
                             load_embeddings, BeamDataset, make_loader)

def _emb(tmp_path, n_pool=20, n_q=6):
    g = torch.Generator().manual_seed(0)
    t = [F.normalize(torch.randn(n, d, generator=g), dim=1) for n, d in ((n_pool, 4), (n_pool, 3), (n_q, 4), (n_q, 3))]
    return load_embeddings(save_embeddings(tmp_path/'emb', *t, {'model': 'pytest', 'splits': {'train': list(range(n_q))}}))

def test_write_read_batch(tmp_path):
    st = _emb(tmp_path)
    recs = {q: QueryRecord(q, [[q, q + 1], [q + 2, q], [q + 3, q + 4]], [0.3, 0.2, 0.1], list(range(q, q + 8)), [1.0, 0.5, 0.0])
            for q in range(6)}
    for writer in (write_beam_data, write_rl_data):
        p = writer(tmp_path/f'{writer.__name__}.json', recs)
        bd = read_beam_data(p, pool_size=20)
        assert {q: (r.sequences, r.scores, r.candidate_pool_ids) for q, r in bd.items()} == \
               {q: (r.sequences, r.scores, r.candidate_pool_ids) for q, r in recs.items()}
    ds = BeamDataset(bd, st, K=8, shot_num=2, n_beams=4)
    batches = list(make_loader(ds, batch_size=4, shuffle=True, seed=0))
    assert [b['query'].shape[0] for b in batches] == [4, 2]
    b = batches[0]
    assert b['cands'].shape == (4, 8, 7) and b['beams'].shape == (4, 4, 2) and b['beams'].dtype == torch.long
    assert b['beam_mask'].sum(1).tolist() == [3, 3, 3, 3] and (b['scores'][:, 3] == 0).all()
    ids = b['cand_ids'].gather(1, b['beams'].flatten(1)).view(4, 4, 2)
    for i, q in enumerate(b['query_ids'].tolist()):
        assert ids[i, :3].tolist() == recs[q].sequences
        assert torch.equal(b['query'][i], st.queries[q]) and torch.equal(b['cands'][i], st.pool[b['cand_ids'][i]])
    again = list(make_loader(ds, batch_size=4, shuffle=True, seed=0))
    assert [x['query_ids'].tolist() for x in again] == [x['query_ids'].tolist() for x in batches]

class _Marker:
    "Unpickling this would create a directory: it must never happen"
    def __init__(self, path): self.path = path
    def __reduce__(self): return (os.makedirs, (self.path,))

def test_pt_pickled_object_refused(tmp_path):
    marker = str(tmp_path/'PWNED')
    torch.save({'emb': torch.zeros(3, 2), 'x': _Marker(marker)}, tmp_path/'evil.pt')
    with pytest.raises(EmbeddingError, match='evil.pt: refused by torch.load'): load_embeddings(tmp_path/'evil.pt')
    assert not os.path.exists(marker)
    torch.save({'emb': torch.zeros(3, 2)}, tmp_path/'dict.pth')
    with pytest.raises(EmbeddingError, match='expected one'): load_embeddings(tmp_path/'dict.pth')

def test_upstream_beams_with_pt_store(tmp_path):
    x = F.normalize(torch.randn(30, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    torch.save(x, tmp_path/'feats.pt')
    st = load_embeddings(tmp_path/'feats.pt')
    up = {str(q): {"id_list": [[q + 1, q + 2, q], [q + 3, q + 1, q]], "score_list": [0.2, 0.1]} for q in range(5)}
    (tmp_path/'beams.json').write_text(json.dumps(up))
    bd = read_beam_data(tmp_path/'beams.json', pool_size=30, shared_ids=True)
    ds = BeamDataset(bd, st, K=6, shot_num=2, n_beams=2)
    b = next(iter(make_loader(ds, batch_size=5, shuffle=False)))
    assert b['cand_ids'].shape == (5, 6)
    for i, q in enumerate(b['query_ids'].tolist()):
        pool = b['cand_ids'][i].tolist()
        assert q not in pool and len(set(pool)) == 6
        assert b['cand_ids'][i][b['beams'][i]].tolist() == [[q + 1, q + 2], [q + 3, q + 1]]
    ds2 = BeamDataset(read_beam_data(tmp_path/'beams.json'), st, K=6, shot_num=2, n_beams=2)
    assert torch.equal(ds2[3]['cand_ids'], ds[3]['cand_ids'])  # deterministic

def test_bad_files_name_file_query_field(tmp_path):
    p = tmp_path/'beams_train.json'
    p.write_text(json.dumps({"17": {"id_list": [[1, 2, 17], [3, 17]], "score_list": [0.2, 0.1]}}))
    with pytest.raises(BeamDataError, match=r'beams_train.json: query "17", field `id_list`: ragged beams'): read_beam_data(p)
    p.write_text('{"17": {"id_list": [[1, 2, 17]')
    with pytest.raises(BeamDataError, match='not valid JSON'): read_beam_data(p)
    rl = {"_meta": {}, "3": {"candidate_pool_ids": [5, 6, 7], "pointer_candidates": [
        {"pointer": [0, 1], "beam_score": 0.1}, {"pointer": [1, 2], "beam_score": 0.2, "eval_failed": True}]}}
    p.write_text(json.dumps(rl))
    with pytest.warns(UserWarning, match='skipped 1 failed'): bd = read_beam_data(p)
    assert bd.skipped['error'] == 1 and bd[3].sequences == [[5, 6]]
