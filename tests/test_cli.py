"The Lever-Plus recipe's command line end to end on a tiny simulated world: make_data → sft → grpo (→ resume), and the demo"
import json
from pathlib import Path
import torch
from conftest import run_script, grpo_args, TINY_WORLD
from lever_plus.model import PointerSelector
from lever_plus.train import read_metrics, load_trainer_state


def test_sft_cli(world, tmp_path):
    r = run_script('lever_plus_sft', ['--beam_data', world/'beams_train.json', '--val_beam_data', world/'beams_val.json',
                                      '--embeddings', world, '--output_dir', tmp_path/'sft', '--version', 'v1', '--sft.epochs', 1,
                                      '--batch_size', 16, '--d_model', 32])
    assert r.returncode == 0, r.stderr
    m = PointerSelector.from_pretrained(tmp_path/'sft'/'best')
    assert (m.cfg.version, m.cfg.d_model, len(m.layers)) == ('v1', 32, 0)


def test_first_grpo_step_ratio_one_kl_zero(world, sft_ckpt, tmp_path):
    "π = π_old = π_ref at the first GRPO step: the logged ratio is exactly 1 and the KL exactly 0 (dropout is 0.1)"
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, tmp_path/'v3', '--rce_epochs', 0, '--grpo_epochs', 1))
    assert r.returncode == 0, r.stderr
    step = next(x for x in read_metrics(tmp_path/'v3'/'metrics.jsonl') if x['kind'] == 'step')
    assert PointerSelector.from_pretrained(sft_ckpt).cfg.dropout > 0
    assert (step['stage'], step['mean_ratio'], step['kl'], step['clip_frac']) == ('grpo/top3', 1.0, 0.0, 0.0)


def test_grpo_cli_outputs_and_resume(world, sft_ckpt, tmp_path):
    "A full run writes its outputs; an interrupted-then-resumed run ends identical to it"
    full, part = tmp_path/'full', tmp_path/'part'
    args = ('--rce_epochs', 1, '--grpo_epochs', 2, '--online_samples', 4)
    assert run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, full, *args)).returncode == 0
    assert {p.name for p in full.iterdir()} >= {'best', 'checkpoints', 'reference', 'metrics.jsonl', 'curves.png', 'config.json'}
    # the same run stopped after epoch 1: its checkpoint folder is all that a killed run leaves behind
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, part, '--rce_epochs', 1, '--grpo_epochs', 2, '--online_samples', 4))
    assert r.returncode == 0
    for d in ('epoch_002', 'epoch_003'): __import__('shutil').rmtree(part/'checkpoints'/d)
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, part, *args, '--resume', part))
    assert r.returncode == 0, r.stderr
    a = PointerSelector.from_pretrained(full/'checkpoints'/'epoch_003').state_dict()
    b = PointerSelector.from_pretrained(part/'checkpoints'/'epoch_003').state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(full/'metrics.jsonl') == read_metrics(part/'metrics.jsonl')
    assert load_trainer_state(part/'checkpoints'/'epoch_003')['scorer_cache']['n_scored'] > 0


def test_demo_quick(tmp_path):
    r = run_script('lever_plus_demo', ['--out', tmp_path/'demo', '--quick', '--no_progress'])
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path/'demo'/'eval.json').read_text())
    assert [x['method'] for x in rows][-1] == 'beam oracle' and rows[-1]['frac_oracle'] == 1.0
    assert all(x['info_ci'][0] <= x['info'] <= x['info_ci'][1] for x in rows)
    assert {'report.md', 'eval.png', 'eval.json'} <= {p.name for p in (tmp_path/'demo').iterdir()}


def test_unlabeled_queries_cli(world, sft_ckpt, tmp_path):
    "make_data --n_unlabeled writes a query-pool file (labeled files unchanged); grpo --unlabeled samples on those queries too"
    w = tmp_path/'world_u'
    r = run_script('lever_plus_make_data', ['--out', w, '--seed', 0, '--n_unlabeled', 20, '--no_progress', *[x for k, v in TINY_WORLD.items() for x in (f'--{k}', v)]])
    assert r.returncode == 0, r.stderr
    for f in ('beams_train.json', 'beams_val.json', 'beams_test.json'): assert (w/f).read_bytes() == (world/f).read_bytes(), f
    pools = json.loads((w/'queries_unlabeled.json').read_text())
    assert sorted(int(k) for k in pools if k != '_meta') == list(range(80, 100))
    args = grpo_args(w, sft_ckpt, tmp_path/'u', '--rce_epochs', 0, '--grpo_epochs', 1, '--online_samples', 4, '--unlabeled', w/'queries_unlabeled.json')
    r = run_script('lever_plus_grpo', args)
    assert r.returncode == 0, r.stderr
    steps = [x for x in read_metrics(tmp_path/'u'/'metrics.jsonl') if x['kind'] == 'step']
    assert len(steps) == 5 and steps[-1]['scorer_calls'] > 0  # (48 labeled + 20 unlabeled) / 16 → 5 steps
    r = run_script('lever_plus_grpo', grpo_args(w, sft_ckpt, tmp_path/'bad', '--unlabeled', w/'queries_unlabeled.json'))
    assert r.returncode != 0 and 'queries without beams are only used by online GRPO' in r.stderr
    assert not (tmp_path/'bad'/'best').exists()


def test_rl_format_from_a_policy_cli(sft_ckpt, tmp_path):
    "make_data --rl --rl_policy CKPT: the groups' samples come from the selector (they differ from the similarity softmax's)"
    world_args = [x for k, v in TINY_WORLD.items() for x in (f'--{k}', v)]
    samples = {}
    for name, extra in (('sim', []), ('pol', ['--rl_policy', sft_ckpt])):
        r = run_script('lever_plus_make_data', ['--out', tmp_path/name, '--rl', '--no_progress', *world_args, *extra])
        assert r.returncode == 0, r.stderr
        d = json.loads((tmp_path/name/'beams_train_rl.json').read_text())
        samples[name] = {k: [t['pointer_global'] for t in v['pointer_candidates'] if t['gen_method'] == 'sample'] for k, v in d.items() if k != '_meta'}
        assert all(len(s) >= 1 for s in samples[name].values())
    assert samples['sim'] != samples['pol']
    r = run_script('lever_plus_make_data', ['--out', tmp_path/'bad', '--rl_policy', sft_ckpt, '--no_progress', *world_args])
    assert r.returncode != 0 and '--rl_policy needs --rl' in r.stderr
