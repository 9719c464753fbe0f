"""`lever_plus_sft --search N` on the tiny simulated world: it runs, writes its summary and a config that the command
loads back, and refuses a folder that holds an earlier search unless --overwrite"""
import json
import pytest
from conftest import run_script
from lever_plus.core import ConfigError, load_config
from lever_plus.cli import sft_main, sft_parser, parse_config_args, config_from_args


def _args(world, out, *extra):
    return ['--beam_data', world/'beams_train.json', '--val_beam_data', world/'beams_val.json', '--embeddings', world,
            '--output_dir', out, '--epochs', 1, '--d_model', 16, '--n_layers', 1, '--batch_size', 16, *extra]


def test_sft_search_cli(world, tmp_path):
    space = tmp_path/'space.yaml'
    space.write_text('sft.lr: [3.0e-3, 1.0e-2]\nloss:\n  - {sft.all_beams: false, sft.score_tau: 0.0}\n'
                     '  - {sft.all_beams: true, sft.score_tau: 0.01}\n')
    out = tmp_path/'search'
    r = run_script('lever_plus_sft', _args(world, out, '--search', 3, '--search_space', space, '--search_seed', 1))
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert [l.split(':')[0] for l in r.stderr.splitlines() if l.startswith('trial')] == ['trial 0', 'trial 1', 'trial 2']
    s = json.loads((out/'search.json').read_text())
    assert s['complete'] and s['n_trials'] == 3 and s['metric'] == 'val_info' and s['seed'] == 1
    assert [t['dir'] for t in s['trials']] == ['trial_000', 'trial_001', 'trial_002'] and s['trials'][0]['overrides'] == {}
    assert all((out/t['dir']/'best'/'model.safetensors').is_file() for t in s['trials'])
    assert s['best_trial'] == printed['best_trial'] == max(range(3), key=lambda i: s['trials'][i]['val_info'])
    assert (out/'best'/'model.safetensors').read_bytes() == (out/s['best']['dir']/'best'/'model.safetensors').read_bytes()
    # the chosen config: what the winner trained with, and `lever_plus_sft --config` takes it (flags still override)
    won = load_config(out/s['best']['dir']/'config.json')
    ns = parse_config_args(sft_parser(), ['--config', str(out/'best_config.yaml'), '--beam_data', 'b.json', '--embeddings', 'e', '--epochs', '4'])
    cfg = config_from_args(ns)
    assert cfg.sft == type(won.sft)(**{**vars(won.sft), 'epochs': 4}) and (cfg.model.d_model, cfg.model.n_layers) == (16, 1)
    # a second search into the folder is refused and changes nothing; --overwrite replaces it
    before = (out/'search.json').read_bytes()
    with pytest.raises(ConfigError, match='holds an earlier run'):
        sft_main([str(a) for a in _args(world, out, '--search', 2, '--search_space', space, '--no_progress')])
    assert (out/'search.json').read_bytes() == before and (out/'trial_002').is_dir()
    res = sft_main([str(a) for a in _args(world, out, '--search', 2, '--search_space', space, '--no_progress', '--overwrite')])
    assert res['n_trials'] == 2 and not (out/'trial_002').exists()
