"The Lever-Plus recipe's command line end to end on a tiny simulated world: make_data → sft → grpo (→ resume), and the demo"
import argparse, json
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


def test_demo_world_flags_and_recipe(tmp_path):
    "lever_plus_demo --shot_num/--K/--n_train/--n_unlabeled size the world; v3 trains with the v3-online recipe on it"
    from lever_plus.cli import recipe_config
    r = run_script('lever_plus_demo', ['--out', tmp_path/'demo', '--quick', '--no_progress', '--shot_num', 3, '--K', 12, '--n_train', 40, '--n_unlabeled', 8])
    assert r.returncode == 0, r.stderr
    beams = json.loads((tmp_path/'demo'/'data'/'beams_train.json').read_text())
    recs = [v for k, v in beams.items() if k != '_meta']
    assert len(recs) == 40 and all(len(b) == 3 + 1 and len(v['candidate_pool_ids']) == 12 for v in recs for b in v['id_list'])  # 3 shots + the query
    assert len([k for k in json.loads((tmp_path/'demo'/'data'/'queries_unlabeled.json').read_text()) if k != '_meta']) == 8
    cfg = json.loads((tmp_path/'demo'/'v3'/'config.json').read_text())
    assert (cfg['data']['shot_num'], cfg['data']['K']) == (3, 12)
    assert {k: cfg['grpo'][k] for k in recipe_config('v3-online')['grpo']} == recipe_config('v3-online')['grpo']


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


# ---------------------------------------------------------------------------------------------------------------
# --help: what a new user learns from the commands (in-process, seconds)

import contextlib, io, re, sys
import pytest
from lever_plus import cli
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import commands_page


def _help_of(main, monkeypatch, width=100) -> str:
    "What `main(['--help'])` prints (exit status 0) in a terminal of `width` columns"
    monkeypatch.setenv('COLUMNS', str(width + 2))  # argparse wraps at the terminal width - 2
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as e: main(['--help'])
    assert e.value.code == 0
    return out.getvalue()


MAINS = {'lever_plus_make_data': cli.make_data_main, 'lever_plus_sft': cli.sft_main, 'lever_plus_grpo': cli.grpo_main,
         'lever_plus_demo': cli.demo_main, 'lever_plus_eval': cli.eval_main, 'lever_plus_prepare_vqa': cli.prepare_vqa_main,
         'lever_plus_select': cli.select_main}


def test_every_console_script_has_a_parser_and_is_on_the_commands_page(monkeypatch):
    scripts = commands_page.console_scripts(ROOT)
    assert len(scripts) == 7 and 'lever_plus_prepare_vqa' in scripts
    assert set(scripts) == set(cli.command_parsers()) == set(MAINS)
    nb = json.loads((ROOT/'nbs'/'commands.ipynb').read_text(encoding='utf-8'))
    shown = {}
    for c in nb['cells']:
        m = re.fullmatch(r"print\(command_help\('(\w+)'\)\)", ''.join(c['source']).strip()) if c['cell_type'] == 'code' else None
        if m: shown[m.group(1)] = ''.join(t for o in c['outputs'] if o.get('name') == 'stdout' for t in o['text'])
    assert set(shown) == set(scripts), 'run `python tools/commands_page.py`'
    for name in scripts:  # the page shows what the parsers print now, and what `--help` prints
        assert shown[name] == cli.command_help(name) + '\n', f'nbs/commands.ipynb: {name} is stale: run `python tools/commands_page.py`'
        assert _help_of(MAINS[name], monkeypatch) == cli.command_help(name), name
    assert (ROOT/'nbs'/'commands.ipynb').read_text(encoding='utf-8') == commands_page.text()


def test_help_says_every_default_and_what_is_required():
    for name, p in cli.command_parsers().items():
        text = cli.command_help(name, width=80)
        assert '(default: )' not in text and 'runs/v3' not in text.split('examples:')[0] or name == 'lever_plus_grpo', name
        for a in p._actions:
            if isinstance(a, argparse._HelpAction): continue
            h = p.formatter_class(name)._get_help_string(a)
            assert a.help and (a.nargs == 0 or '(default' in h or '(required)' in h), (name, a.option_strings)
        assert re.search(rf'\nexamples:\n  {name} ', text), name
    sft = cli.command_help('lever_plus_sft')
    assert '(default: runs/sft)' in sft and sft.count('(required)') == 2
    assert 'usage: lever_plus_sft [-h]' in sft and ' --beam_data STR --embeddings STR' in sft  # not in brackets: required


def _refused(p, argv) -> str:
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as e: p.parse_args(argv)
    assert e.value.code == 2
    return err.getvalue()


SFT_OK = ['--beam_data', 'b.json', '--embeddings', 'e']
GRPO_OK = ['--sft_ckpt', 'c', *SFT_OK]


@pytest.mark.parametrize('name,argv', [
    ('lever_plus_sft', [*SFT_OK, '--beta', '0.1']), ('lever_plus_sft', [*SFT_OK, '--rce_epochs', '1']),
    ('lever_plus_sft', [*SFT_OK, '--unlabeled', 'u.json']), ('lever_plus_sft', [*SFT_OK, '--kl_ceiling', '1']),
    ('lever_plus_grpo', [*GRPO_OK, '--d_model', '32']), ('lever_plus_grpo', [*GRPO_OK, '--version', 'v1']),
    ('lever_plus_grpo', [*GRPO_OK, '--epochs', '3']), ('lever_plus_sft', [*SFT_OK, '--epoch', '3']),  # no abbreviations
    ('lever_plus_eval', ['--embeddings', 'e', '--shot', '2']), ('lever_plus_sft', ['--embeddings', 'e']),
    ('lever_plus_grpo', SFT_OK), ('lever_plus_make_data', ['--seed', '1']),
])
def test_flags_a_command_does_not_offer_are_refused(name, argv):
    err = _refused(cli.command_parsers()[name], argv)
    assert 'unrecognized arguments' in err or 'the following arguments are required' in err, err


def test_old_spellings_still_work():
    ps = cli.command_parsers()
    a = ps['lever_plus_make_data'].parse_args(['--out', 'd', '--model', 'm', '--dtype', 'fp16'])
    assert (a.output_dir, a.vlm, a.vlm_dtype, a.device) == ('d', 'm', 'fp16', 'auto')
    for name in ('lever_plus_demo', 'lever_plus_eval'):
        assert ps[name].parse_args(['--out', 'o', *(['--embeddings', 'e'] if name == 'lever_plus_eval' else [])]).output_dir == 'o'
    assert ps['lever_plus_eval'].parse_args(['--embeddings', 'e']).device == 'auto'
    assert ps['lever_plus_select'].parse_args(['--ckpt', 'c', '--embeddings', 'e', '--queries', 'q', '--output', 'o']).device == 'auto'
    vqa = ['--train_questions', 'a', '--train_annotations', 'b', '--train_images', 'c', '--test_questions', 'd',
           '--test_annotations', 'e', '--test_images', 'f']
    assert ps['lever_plus_prepare_vqa'].parse_args(['--out', 'o', *vqa]).output_dir == 'o'
    for argv, want in (([], (False, False)), (['--all_beams'], (True, False)), (['--all_beams', 'true', '--keep_fallback', 'true'], (True, True)),
                       (['--sft.all_beams', 'false', '--keep_fallback'], (False, True))):
        c = cli.config_from_args(ps['lever_plus_sft'].parse_args([*SFT_OK, *argv]))
        assert (c.sft.all_beams, c.data.keep_fallback) == want, argv
    c = cli.config_from_args(ps['lever_plus_sft'].parse_args([*SFT_OK, '--out', 'x', '--sft.epochs', '2']))
    assert (c.run.output_dir, c.sft.epochs) == ('x', 2)
    assert cli.config_from_args(ps['lever_plus_sft'].parse_args(SFT_OK)).run.output_dir == 'runs/sft'
    g = ps['lever_plus_grpo'].parse_args([*GRPO_OK, '--model', 'm', '--vlm_dtype', 'bf16', '--out', 'o', '--lr', '0.01'])
    assert (g.vlm, g.vlm_dtype) == ('m', 'bf16')
    c = cli.config_from_args(g)
    assert (c.run.output_dir, c.sft.lr) == ('o', 0.01)
    assert cli.config_from_args(ps['lever_plus_grpo'].parse_args(GRPO_OK)).run.output_dir == 'runs/v3'


def test_a_config_file_may_give_the_required_data(tmp_path):
    from lever_plus.core import save_config, TrainConfig, DataConfig
    save_config(TrainConfig(data=DataConfig(beam_data='b.json', embeddings='e')), tmp_path/'c.yaml')
    ns = cli.parse_config_args(cli.sft_parser(), ['--config', str(tmp_path/'c.yaml'), '--epochs', '1'])
    c = cli.config_from_args(ns)
    assert (c.data.beam_data, c.data.embeddings, c.sft.epochs, c.run.output_dir) == ('b.json', 'e', 1, 'runs/sft')
