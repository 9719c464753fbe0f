"Real-data path with tiny random-init models saved to tmp dirs and loaded by path (lever_plus.real / clip / vlm)"
import json, math, subprocess, sys, warnings
from dataclasses import replace
import pytest, torch
import torch.nn.functional as F
from lever_plus.core import TrainConfig, ConfigError
from lever_plus.data import read_beam_data, load_embeddings, BeamDataset, make_loader
from lever_plus.sim import vqa_soft_acc
from lever_plus.real import (VQADataError, read_vqa, load_items, vqa_accuracy, normalize_answer, vqa_splits)
from lever_plus.testing import tiny_vqa

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Tiny models: one intra-op thread is faster than several (thread start-up dominates), most of all on a shared machine"
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.fixture(scope='module')
def vqa(tmp_path_factory):
    files = tiny_vqa(tmp_path_factory.mktemp('vqa'))
    return files, read_vqa(*files['train2014']), read_vqa(*files['val2014'])

@pytest.fixture(scope='module')
def clip_dir(tmp_path_factory):
    from lever_plus.testing import tiny_clip
    return tiny_clip(tmp_path_factory.mktemp('clip'))

@pytest.fixture(scope='module')
def vlm(tmp_path_factory):
    from lever_plus.vlm import load_vlm
    from lever_plus.testing import tiny_vlm
    d = tiny_vlm(tmp_path_factory.mktemp('vlm'))
    return d, *load_vlm(str(d), 'cpu')

def test_modules_import_without_transformers():
    code = "import sys, lever_plus.real, lever_plus.clip, lever_plus.vlm; assert 'transformers' not in sys.modules"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]

# --- VQA accuracy: hand-checked cases -------------------------------------------------------------

@pytest.mark.parametrize('pred,answers,acc', [
    ('Two', ['2'] * 10, 1.0),                                  # number word → digit
    ('the dog', ['dog'] * 10, 1.0),                            # article dropped
    ('dog', ['dog'] * 3 + ['cat'] * 7, 0.9),                   # 3 of 10: (3·2/3 + 7·1)/10 over leave-one-out subsets
    ('dog', ['dog'] * 4 + ['cat'] * 6, 1.0),                   # 4 of 10
    ('dog', ['dog'] + ['cat'] * 9, 0.3),                       # 1 of 10: 9 subsets × 1/3, / 10
    ('dog', ['dog'] * 2 + ['cat'] * 8, 0.6),
    ('bird', ['dog'] * 10, 0.0),
    ('Yes.', ['yes'] * 5 + ['no'] * 5, 1.0),                   # case and trailing period
    ('dont know', ["don't know"] * 3 + ['no'] * 7, 0.9),       # contraction restored
    ('1,000', ['1000'] * 2 + ['100'] * 8, 0.6),                # digit-comma-digit
    ('red and white', ['red-and-white'] * 4 + ['red'] * 6, 1.0),  # hyphens → spaces (annotators disagree)
])
def test_vqa_accuracy_cases(pred, answers, acc):
    assert vqa_accuracy(pred, answers) == pytest.approx(acc)

def test_vqa_accuracy_official_vs_full_gt_norm():
    assert vqa_accuracy('dog', ['The dog'] * 10) == 0.0        # the official script leaves unanimous answers as given
    assert vqa_accuracy('dog', ['The dog'] * 10, gt_norm='full') == 1.0
    assert normalize_answer('A red-and-white bus!') == 'red and white bus'
    with pytest.raises(ConfigError, match="'official' or 'full'"): vqa_accuracy('a', ['a'], gt_norm='x')

def test_vqa_accuracy_matches_closed_form_on_random_answers():
    g = torch.Generator().manual_seed(1)
    ann, pred = torch.randint(5, (300, 10), generator=g), torch.randint(5, (300,), generator=g)
    words = ['dog', 'cat', 'red bus', 'yes', 'no']
    ours = torch.tensor([vqa_accuracy(words[p], [words[a] for a in row]) for p, row in zip(pred.tolist(), ann.tolist())])
    torch.testing.assert_close(ours, vqa_soft_acc(pred, ann))

# --- VQA files ------------------------------------------------------------------------------------

def test_read_vqa_items_and_errors(vqa, tmp_path):
    files, train, val = vqa
    assert (len(train), len(val)) == (24, 8) and all(len(it.answers) == 10 for it in train)
    assert train[0].answer == json.loads(files['train2014'][1].read_text())['annotations'][0]['multiple_choice_answer']
    assert train[2].image.endswith('train2014/COCO_train2014_000000001002.jpg')
    with pytest.raises(VQADataError, match='no annotation for question_id 10000'): read_vqa(files['train2014'][0], files['val2014'][1])
    with pytest.raises(VQADataError, match=r'no image for question 10000 .*\(tried COCO_train2014_000000001000.jpg'):
        read_vqa(*files['train2014'][:2], image_dir=files['val2014'][2])
    (tmp_path/'q.json').write_text(json.dumps({'questions': [{'question_id': 1, 'image_id': 2}]}))
    with pytest.raises(VQADataError, match=r'questions\[0\] \(question_id 1\) lacks field `question`'):
        read_vqa(tmp_path/'q.json', files['train2014'][1])

def test_vqa_splits_exclusion(vqa):
    _, train, val = vqa
    s = vqa_splits(train, val, n_train=12, n_val=5, n_test=3, seed=2)
    assert {k: len(v) for k, v in s['splits'].items()} == {'train': 12, 'val': 5, 'test': 3}
    qp = s['query_pool_ids']
    assert [s['pool'][qp[i]] for i in range(17)] == s['queries'][:17] and qp[17:] == [-1] * 3

# --- CLIP features --------------------------------------------------------------------------------

def test_clip_shapes_normalisation_batching(vqa, clip_dir):
    from lever_plus.clip import load_clip, encode_images, encode_texts, combine_upstream
    _, train, _ = vqa
    m, proc = load_clip(str(clip_dir), 'cpu')
    paths = [it.image for it in train[:6]]
    one, all6 = encode_images(m, proc, paths, batch_size=1), encode_images(m, proc, paths, batch_size=4)
    assert one.shape == (6, 16) and one.dtype == torch.float32
    torch.testing.assert_close(all6.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(one, all6, atol=1e-5, rtol=1e-4)
    texts = ['a', 'what is the color of the bus in the picture', 'dog']
    torch.testing.assert_close(encode_texts(m, proc, texts, batch_size=1), encode_texts(m, proc, texts, batch_size=3), atol=1e-5, rtol=1e-4)
    u = combine_upstream(one[:3], encode_texts(m, proc, texts))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(3))
    with pytest.warns(UserWarning, match='fp16 asked for on a CPU'): load_clip(str(clip_dir), 'cpu', fp16=True)

def test_prepare_vqa_writes_contract_files(vqa, clip_dir, tmp_path):
    from lever_plus.clip import prepare_vqa
    files, _, _ = vqa
    s = prepare_vqa(tmp_path, *files['train2014'], *files['val2014'], model=str(clip_dir), n_train=10, n_val=3,
                    device='cpu', upstream=True, progress=False)
    assert s['splits'] == {'train': 10, 'val': 3, 'test': 8}
    meta = json.loads((tmp_path/'meta.json').read_text())
    assert (meta['format'], meta['d_img'], meta['d_txt'], meta['n_pool'], meta['n_query']) == ('lever_plus.embeddings/1', 16, 16, 24, 21)
    st = load_embeddings(tmp_path)
    torch.testing.assert_close(st.queries[:, :16].norm(dim=1), torch.ones(21))
    pool, queries = load_items(tmp_path)
    assert (len(pool), len(queries)) == (24, 21)
    own = torch.tensor(meta['query_pool_ids'][:13])
    torch.testing.assert_close(st.queries[:13, :16], st.pool[own, :16])       # same image, same image row
    assert ((st.queries[:13, 16:] - st.pool[own, 16:]).abs().amax(1) > 1e-3).all()  # question vs question + answer
    up = load_embeddings(tmp_path/'upstream_pool.pt')                  # upstream-style [N, d], read with weights_only=True
    assert up.shared and up.pool.shape == (24, 16)
    torch.testing.assert_close(up.pool, F.normalize(F.normalize(st.pool[:, :16], dim=1) + F.normalize(st.pool[:, 16:], dim=1), dim=1))

# --- the VLM scorer -------------------------------------------------------------------------------

def test_vlm_scorer_probabilities(vqa, vlm):
    from lever_plus.vlm import HFVLMScorer
    _, pool, queries = vqa
    d, model, proc = vlm
    sc = HFVLMScorer(str(d), queries, pool, device='cpu', batch_size=4)  # loaded by path
    q = torch.tensor([0, 0, 0, 1, 1, 3, 3])
    shots = torch.tensor([[1, 2], [2, 1], [7, 9], [-1, -1], [4, -1], [5, 6], [11, 12]])
    p = sc.prob(q, shots)
    assert ((p > 0) & (p <= 1)).all()
    assert p[0] != p[1] and p[0] != p[2] and p[4] != p[3]              # depends on the shots and their order
    one = HFVLMScorer(model, queries, pool, processor=proc, batch_size=1)
    torch.testing.assert_close(one.prob(q, shots), p, atol=1e-6, rtol=1e-4)
    info = sc.info_score(q, shots)
    torch.testing.assert_close(info, p - sc.zero_shot(q))
    assert info[3] == 0 and sorted(sc._p0) == [0, 1, 3]
    calls = []
    orig = sc._logp
    sc._logp = lambda *a: calls.append(1) or orig(*a)
    sc.zero_shot(torch.tensor([0, 1, 3]))                               # cached: no forward pass
    assert calls == []
    assert sc.info_score(torch.tensor([2]), torch.tensor([[5, 5]])).item() == -math.inf and calls == []
    with pytest.raises(ConfigError, match=r'query ids must be in \[0, 8\)'): sc.prob(torch.tensor([8]), torch.tensor([[0, 1]]))

def test_vlm_generation_and_vqa_acc(vqa, vlm):
    from lever_plus.vlm import HFVLMScorer
    _, pool, queries = vqa
    _, model, proc = vlm
    sc = HFVLMScorer(model, queries, pool, processor=proc, max_new_tokens=4)
    q, shots = torch.tensor([0, 2, 5]), torch.tensor([[1, 3], [-1, -1], [0, 8]])
    answers = sc.generate(q, shots)
    assert len(answers) == 3 and all('\n' not in a for a in answers)
    acc = sc.vqa_acc(q, shots)
    assert acc.tolist() == [vqa_accuracy(a, queries[i].answers) for a, i in zip(answers, q.tolist())]
    sc.queries = [replace(it, answers=[answers[0]] * 10) for it in queries]  # the generated answer as ground truth → 1.0
    sc.gt_norm = 'full'                                                   # (random weights: normalise the odd tokens on both sides)
    assert sc.vqa_acc(q[:1], shots[:1]).item() == 1.0

def test_text_only_causal_lm_fallback(vqa, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    from lever_plus.testing import tiny_tokenizer
    from lever_plus.vlm import HFVLMScorer, load_vlm
    tok = tiny_tokenizer(max_len=2048)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, t = load_vlm(str(tmp_path), 'cpu')
    assert type(model).__name__ == 'LlamaForCausalLM'
    _, pool, queries = vqa
    sc = HFVLMScorer(model, queries, pool, processor=t)
    assert sc.image_token == '' and not sc.vision
    a = next(i for i in range(1, 24) if pool[i].answer != pool[0].answer)    # text only: shots must differ in their text
    p = sc.prob(torch.tensor([0, 0, 0]), torch.tensor([[0, a], [a, 0], [-1, -1]]))
    assert ((p > 0) & (p <= 1)).all() and p[0] != p[1] and p[0] != p[2]

# --- beam data with the real scorer, and upstream files into training -----------------------------

def test_make_real_data_into_batches(vqa, clip_dir, vlm, tmp_path):
    from lever_plus.clip import prepare_vqa
    from lever_plus.vlm import make_real_data
    files, _, _ = vqa
    _, model, proc = vlm
    prepare_vqa(tmp_path, *files['train2014'], *files['val2014'], model=str(clip_dir), n_train=5, n_val=2, device='cpu', progress=False)
    res = make_real_data(tmp_path, model, processor=proc, K=5, shot_num=2, beam_width=3, progress=False, splits=['train'])
    assert res['files'] == ['beams_train.json'] and res['splits']['train']['n_query'] == 5
    meta = json.loads((tmp_path/'meta.json').read_text())
    recs = read_beam_data(tmp_path/'beams_train.json', pool_size=24)
    assert all(meta['query_pool_ids'][q] not in r.candidate_pool_ids for q, r in recs.items())
    b = next(iter(make_loader(BeamDataset(recs, load_embeddings(tmp_path), K=5, shot_num=2, n_beams=3), batch_size=5, shuffle=False)))
    assert b['beams'].shape == (5, 3, 2) and b['cands'].shape == (5, 5, 32) and b['beam_mask'].all()

def _upstream_fixtures(d):
    "Both upstream formats + an upstream [N, d] .pt tensor, written as upstream writes them"
    torch.save(F.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=1), d/'feats.pt')
    beam = {str(q): {'id_list': [[q + 1, q + 3, q], [q + 2, q + 1, q], [q + 5, q + 4, q]], 'score_list': [0.3, 0.2, 0.05]} for q in range(8)}
    (d/'beams.json').write_text(json.dumps(beam))
    rl = {'_meta': {'source': 'fixture'}}
    for q in range(8, 16):
        pool = [q + 10 + k for k in range(6)]
        mk = lambda ptr, method, score, **kw: {'pointer': ptr, 'pointer_global': [pool[i] for i in ptr], 'gen_method': method,
                                               'beam_score': score, 'vqa_acc_score': 1.0, 'vqa_eval_mode': 'vqaEval', **kw}
        rl[str(q)] = {'query': {'query_id': q, 'question_id': 1000 + q, 'question': 'q?', 'gt_answers_raw': ['a'] * 10},
                      'candidate_pool_ids': pool,
                      'pointer_candidates': [mk([0, 2], 'beam', 0.4), mk([3, 1], 'sample', 0.1),
                                             mk([4, 5], 'random', 0.0, eval_failed=True, vqa_eval_mode='error')]}
    (d/'rl.json').write_text(json.dumps(rl))
    return d/'feats.pt', d/'beams.json', d/'rl.json'

def test_upstream_fixtures_round_trip_into_batches(tmp_path):
    pt, beam, rl = _upstream_fixtures(tmp_path)
    st = load_embeddings(pt)
    for path, G, n_q in ((beam, 3, 8), (rl, 2, 8)):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')                                 # the failed RL trajectory is skipped with a warning
            recs = read_beam_data(path, pool_size=40, shared_ids=True)
        b = next(iter(make_loader(BeamDataset(recs, st, K=6, shot_num=2, n_beams=G), batch_size=16, shuffle=False)))
        assert b['beams'].shape == (n_q, G, 2) and b['query'].shape == (n_q, 8) and b['cands'].shape == (n_q, 6, 8)
        ids = b['cand_ids'].gather(1, b['beams'].flatten(1)).view(n_q, G, 2)
        assert ids.tolist() == [recs[q].sequences[:G] for q in b['query_ids'].tolist()]
        assert not (b['cand_ids'] == b['query_ids'][:, None]).any()
        torch.testing.assert_close(b['query'], st.queries[b['query_ids']])

def test_sft_trains_from_upstream_files(tmp_path):
    from lever_plus.sft import run_sft
    pt, beam, rl = _upstream_fixtures(tmp_path)
    cfg = TrainConfig()
    cfg = replace(cfg, model=replace(cfg.model, d_model=16, n_layers=1), data=replace(cfg.data, K=6, batch_size=4, val_frac=0.25),
                  sft=replace(cfg.sft, epochs=1), run=replace(cfg.run, device='cpu'))
    for name, path in (('beam', beam), ('rl', rl)):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            res = run_sft(path, pt, tmp_path/f'sft_{name}', version='v1', cfg=cfg)
        assert (res['n_train'], res['n_val']) == (6, 2)
        assert (tmp_path/f'sft_{name}'/'best'/'model.safetensors').is_file()
