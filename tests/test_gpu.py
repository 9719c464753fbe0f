"""CUDA code paths, run only where a GPU is present (skipped on CPU-only CI): training on cuda agrees with the CPU,
DDP over nccl, fp16 CLIP features and the VLM scorer in fp32 / bf16 / fp16 against the CPU reference, the CLIs on cuda."""
import dataclasses, json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def exact_fp32():
    "fp32 matmuls in full precision on the GPU (no TF32), so that cuda and cpu agree closely"
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _toy_run(device:str, out:Path, **grpo):
    from lever_plus.core import ModelConfig, CurriculumConfig, GRPOConfig, set_seed
    from lever_plus.train import post_train
    from lever_plus.testing import toy_problem, tiny_config
    from lever_plus.model import PointerSelector
    tr, va, sc = toy_problem(n_query=64)
    cfg = tiny_config(seed=0, device=device)
    cfg = dataclasses.replace(cfg, model=ModelConfig(d_in=16, d_model=32, n_layers=2, dropout=0.0),
                              curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=2), grpo=GRPOConfig(**grpo))
    set_seed(0)
    res = post_train(cfg, PointerSelector(cfg.model), tr, va, out, sc, progress=False)
    return res, PointerSelector.from_pretrained(out/'checkpoints'/'epoch_003').state_dict()


def test_offline_post_training_cuda_matches_cpu(tmp_path):
    res_c, w_c = _toy_run('cpu', tmp_path/'cpu')
    res_g, w_g = _toy_run('cuda', tmp_path/'cuda')
    assert [h['stage'] for h in res_g['history']] == ['rce/all', 'grpo/top3', 'grpo/all']
    for k in w_c:
        torch.testing.assert_close(w_g[k].cpu(), w_c[k], atol=2e-4, rtol=1e-3, msg=lambda m: f'{k}: {m}')
    for hc, hg in zip(res_c['history'], res_g['history']):
        assert abs(hc['val_info'] - hg['val_info']) < 1e-3 and abs(hc['val_kl'] - hg['val_kl']) < 1e-3


def test_online_grpo_on_cuda(tmp_path):
    res, w = _toy_run('cuda', tmp_path/'on', online_samples=4)
    rows = [json.loads(l) for l in (tmp_path/'on'/'metrics.jsonl').read_text().splitlines()]
    steps = [r for r in rows if r['kind'] == 'step' and r['stage'].startswith('grpo')]
    assert steps and all(torch.isfinite(torch.tensor(r['loss'])) for r in steps)
    assert steps[-1]['scorer_calls'] > steps[0]['scorer_calls'] > 0
    assert res['skipped_steps'] == 0


NCCL_SCRIPT = textwrap.dedent('''
    import dataclasses, os, sys, torch, torch.distributed as tdist
    from pathlib import Path
    from lever_plus.core import *
    from lever_plus.train import post_train
    from lever_plus.testing import toy_problem, tiny_config
    from lever_plus.model import PointerSelector
    from lever_plus.dist import DistContext
    torch.backends.cuda.matmul.allow_tf32 = False
    out = Path(sys.argv[1])
    tr, va, sc = toy_problem(n_query=64)
    cfg = dataclasses.replace(tiny_config(seed=0, device='cuda'), model=ModelConfig(d_in=16, d_model=32, n_layers=2, dropout=0.0),
                              curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=2))
    ctx = None
    if sys.argv[2] == 'nccl':
        torch.cuda.set_device(0)
        tdist.init_process_group('nccl', init_method='tcp://127.0.0.1:29533', rank=0, world_size=1)
        ctx = DistContext(torch.device('cuda', 0))
    set_seed(0)
    post_train(cfg, PointerSelector(cfg.model), tr, va, out, progress=False, ctx=ctx)
    if ctx is not None: print('backend', tdist.get_backend()); tdist.destroy_process_group()
''')


def test_ddp_nccl_one_rank_matches_plain_cuda(tmp_path):
    "DDP over nccl (one GPU here: world size 1) runs the DistContext code path and gives the plain run's weights"
    from lever_plus.model import PointerSelector
    src = tmp_path/'run.py'; src.write_text(NCCL_SCRIPT)
    w = {}
    for mode in ('plain', 'nccl'):
        r = subprocess.run([sys.executable, str(src), str(tmp_path/mode), mode], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        if mode == 'nccl': assert 'backend nccl' in r.stdout
        w[mode] = PointerSelector.from_pretrained(tmp_path/mode/'checkpoints'/'epoch_003').state_dict()
    for k in w['plain']: torch.testing.assert_close(w['nccl'][k], w['plain'][k], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope='module')
def vqa(tmp_path_factory):
    from lever_plus.real import read_vqa
    from lever_plus.testing import tiny_vqa
    files = tiny_vqa(tmp_path_factory.mktemp('vqa'))
    return files, read_vqa(*files['train2014']), read_vqa(*files['val2014'])


def test_clip_fp16_on_cuda_matches_fp32_cpu(vqa, tmp_path):
    from lever_plus.clip import load_clip, encode_images, encode_texts
    from lever_plus.testing import tiny_clip
    d = tiny_clip(tmp_path/'clip')
    _, train, _ = vqa
    paths, texts = [it.image for it in train[:8]], [it.question for it in train[:8]]
    cpu = load_clip(str(d), 'cpu')
    gpu = load_clip(str(d), 'cuda', fp16=True)
    assert gpu[0].dtype == torch.float16 and gpu[0].device.type == 'cuda'
    for enc, xs in ((encode_images, paths), (encode_texts, texts)):
        a, b = enc(*cpu, xs, batch_size=4), enc(*gpu, xs, batch_size=4)
        assert b.dtype == torch.float32 and b.device.type == 'cpu' and b.shape == a.shape
        cos = (a * b).sum(1)
        assert cos.min() > 0.999, cos


@pytest.mark.parametrize('dtype,tol', [('fp32', 1e-4), ('bf16', 5e-2), ('fp16', 1e-2)])
def test_vlm_scorer_on_cuda_matches_cpu(vqa, tmp_path_factory, dtype, tol):
    from lever_plus.vlm import HFVLMScorer
    from lever_plus.testing import tiny_vlm
    _, pool, queries = vqa
    d = tiny_vlm(tmp_path_factory.mktemp('vlm'))
    q = torch.tensor([0, 0, 1, 3, 3, 5])
    shots = torch.tensor([[1, 2], [2, 1], [-1, -1], [5, 6], [4, -1], [0, 8]])
    ref = HFVLMScorer(str(d), queries, pool, device='cpu', dtype='fp32', batch_size=4)
    sc = HFVLMScorer(str(d), queries, pool, device='cuda', dtype=dtype, batch_size=4)
    assert sc.model.device.type == 'cuda'
    p_ref, p = ref.prob(q, shots), sc.prob(q, shots)
    assert p.device.type == 'cpu' and p.dtype == torch.float32
    torch.testing.assert_close(p.log(), p_ref.log(), atol=tol, rtol=0)  # log-prob of the answer, the scorer's quantity
    assert sc.vqa_acc(q[:2], shots[:2]).shape == (2,)


def _cli(name):
    p = Path(sys.executable).parent/name
    if not p.exists(): pytest.skip(f'{name} not installed')
    return str(p)


def test_clis_on_cuda(tmp_path):
    "make_data → SFT → post-training (online, + unlabeled queries) → eval through the console scripts, with --device cuda"
    env = {**os.environ, 'MPLBACKEND': 'Agg'}
    run = lambda name, *a: subprocess.run([_cli(name), *map(str, a)], capture_output=True, text=True, timeout=600, env=env)
    w = tmp_path/'world'
    r = run('lever_plus_make_data', '--out', w, '--n_pool', 400, '--n_train', 48, '--n_val', 16, '--n_test', 16, '--K', 16, '--n_unlabeled', 32)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('lever_plus_sft', '--beam_data', w/'beams_train.json', '--val_beam_data', w/'beams_val.json', '--embeddings', w,
            '--output_dir', tmp_path/'sft', '--epochs', 1, '--batch_size', 16, '--device', 'cuda', '--no_progress')
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('lever_plus_grpo', '--sft_ckpt', tmp_path/'sft'/'best', '--beam_data', w/'beams_train.json', '--val_beam_data',
            w/'beams_val.json', '--embeddings', w, '--output_dir', tmp_path/'grpo', '--batch_size', 16, '--device', 'cuda',
            '--online_samples', 4, '--unlabeled', w/'queries_unlabeled.json', '--no_progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path/'grpo'/'best'/'model.safetensors').is_file()
    r = run('lever_plus_eval', '--ckpt', tmp_path/'grpo', '--beam_data', w/'beams_test.json', '--embeddings', w, '--device', 'cuda',
            '--out', tmp_path/'eval')
    assert r.returncode == 0, r.stderr[-3000:]
