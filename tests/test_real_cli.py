"The real-data commands end to end on tiny random-init CLIP / LLaVA models saved to disk (no download)"
import json
from conftest import run_script
from lever_plus.testing import tiny_vqa, tiny_clip, tiny_vlm, tiny_qwen2_vl
from lever_plus.data import load_datasets


def prepare_and_beams(tmp_path, make_vlm=tiny_vlm):
    "Tiny VQA files → `lever_plus_prepare_vqa` (tiny CLIP) → `lever_plus_make_data --scorer hf` (a tiny VLM, LLaVA by default); → the VLM's folder"
    files = tiny_vqa(tmp_path/'vqa')
    (tq, ta, ti), (vq, va, vi) = files['train2014'], files['val2014']
    clip, vlm = tiny_clip(tmp_path/'clip'), make_vlm(tmp_path/'vlm')
    r = run_script('lever_plus_prepare_vqa', ['--out', tmp_path/'data', '--train_questions', tq, '--train_annotations', ta,
                   '--train_images', ti, '--test_questions', vq, '--test_annotations', va, '--test_images', vi,
                   '--clip', clip, '--n_val', 4, '--device', 'cpu'])
    assert r.returncode == 0, r.stderr
    r = run_script('lever_plus_make_data', ['--scorer', 'hf', '--model', vlm, '--data', tmp_path/'data', '--out', tmp_path/'beams',
                   '--K', 6, '--shot_num', 2, '--beam_width', 3, '--limit', 4, '--device', 'cpu', '--no_progress'])
    assert r.returncode == 0, r.stderr
    return vlm


def test_prepare_vqa_then_hf_beam_data(tmp_path):
    prepare_and_beams(tmp_path)
    d = load_datasets(tmp_path/'beams'/'beams_train.json', tmp_path/'data', val_frac=0)
    b = d['train'][0]
    assert tuple(b['beams'].shape) == (3, 2) and len(b['cand_ids']) == 6
    r = run_script('lever_plus_make_data', ['--scorer', 'hf', '--out', tmp_path/'x'])
    assert r.returncode == 2 and r.stderr.startswith('error: --scorer hf needs --vlm NAME and --data DIR')


def test_beam_data_from_qwen2_vl(tmp_path):
    "Upstream's VLM family through the command: a tiny Qwen2.5-VL saved to disk (its processor assembled without torchvision)"
    prepare_and_beams(tmp_path, lambda d: tiny_qwen2_vl(d, version='2.5'))
    recs = {k: v for k, v in json.loads((tmp_path/'beams'/'beams_train.json').read_text()).items() if k != '_meta'}
    assert len(recs) == 4 and all(len(r['id_list']) == 3 and len(r['id_list'][0]) == 2 + 1 for r in recs.values())  # 3 beams of 2 shots + the query id
    assert all(r['score_list'] == sorted(r['score_list'], reverse=True) for r in recs.values())


def test_online_grpo_with_the_hf_vlm(tmp_path):
    "lever_plus_grpo --scorer hf: online GRPO's samples (and validation picks) scored by a transformers VLM, incl. unlabeled queries"
    from lever_plus.data import read_beam_data, write_query_pools
    vlm = prepare_and_beams(tmp_path)
    b = tmp_path/'beams'
    r = run_script('lever_plus_sft', ['--beam_data', b/'beams_train.json', '--embeddings', tmp_path/'data', '--output_dir', tmp_path/'sft',
                   '--sft.epochs', 1, '--batch_size', 2, '--d_model', 16, '--val_frac', 0.25, '--scorer', 'none', '--no_progress'])
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path/'data'/'meta.json').read_text())
    labeled = set(read_beam_data(b/'beams_train.json'))
    extra = [q for q in meta['splits']['train'] if q not in labeled][:2]  # training queries the beam search skipped (--limit)
    pools = {q: json.loads((b/'beams_train.json').read_text())[str(next(iter(labeled)))]['candidate_pool_ids'] for q in extra}
    write_query_pools(tmp_path/'unl.json', pools)
    r = run_script('lever_plus_grpo', ['--sft_ckpt', tmp_path/'sft'/'best', '--beam_data', b/'beams_train.json', '--embeddings', tmp_path/'data',
                   '--output_dir', tmp_path/'grpo', '--rce_epochs', 0, '--grpo_epochs', 1, '--online_samples', 2, '--batch_size', 2,
                   '--val_frac', 0.25, '--unlabeled', tmp_path/'unl.json', '--scorer', 'hf', '--vlm', vlm, '--device', 'cpu', '--no_progress'])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (tmp_path/'grpo'/'metrics.jsonl').read_text().splitlines()]
    assert rows[-2]['scorer_calls'] > 0 and 'val_info' in rows[-1]
    r = run_script('lever_plus_grpo', ['--sft_ckpt', tmp_path/'sft'/'best', '--beam_data', b/'beams_train.json', '--embeddings', tmp_path/'data',
                   '--output_dir', tmp_path/'bad', '--scorer', 'hf'])
    assert r.returncode == 2 and r.stderr.startswith('error: --scorer hf needs --vlm NAME')
