"""The reference pages stay true to the code: every key a real run writes to metrics.jsonl is documented on
nbs/metrics.ipynb, every config field is in nbs/configuration.ipynb's saved table, and the example config
shipped in the package loads and is part of the wheel's package data."""
import dataclasses, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
EXAMPLE = ROOT/'lever_plus'/'configs'/'example.yaml'

def _cells(name): return json.loads((NBS/name).read_text(encoding='utf-8'))['cells']
def _src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def documented_metrics() -> set:
    "Keys in the first column of the tables of nbs/metrics.ipynb (`| `key` | …`)"
    md = '\n'.join(_src(c) for c in _cells('metrics.ipynb') if c['cell_type'] == 'markdown')
    return set(re.findall(r'^\|\s*`([A-Za-z_][\w]*)`\s*\|', md, re.M))

def test_documented_metrics_parser():
    keys = documented_metrics()
    assert {'val_kl', 'clip_frac', 'top1', 'kind'} <= keys and len(keys) > 40

def _keys(path) -> set:
    return {k for line in Path(path).read_text().splitlines() for k in json.loads(line)}

def test_metrics_page_lists_every_logged_key(world, tmp_path):
    "A tiny SFT run and a tiny post-training run (RCE + GRPO with every reward level, validation, a scorer)"
    from lever_plus.core import TrainConfig, ModelConfig, SFTConfig, DataConfig, RunConfig, CurriculumConfig, RewardConfig
    from lever_plus.sft import run_sft
    from lever_plus.train import run_post_train, auto_scorer
    cfg = TrainConfig(model=ModelConfig(d_model=16, n_layers=1), sft=SFTConfig(epochs=1), data=DataConfig(batch_size=16),
                      run=RunConfig(log_every=1), curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=1),
                      reward=RewardConfig(w_seq=0.5, w_task=0.5))
    beams, val = world/'beams_train.json', world/'beams_val.json'
    sft = run_sft(beams, world, tmp_path/'sft', 'v2', cfg, val, scorer=auto_scorer(world))
    run_post_train(sft['best_dir'], beams, world, tmp_path/'v3', cfg, val_beam_data=val, progress=False)
    logged = _keys(tmp_path/'sft'/'metrics.jsonl') | _keys(tmp_path/'v3'/'metrics.jsonl')
    assert {'top1', 'val_info', 'rce_loss', 'kl', 'reward_task_mean', 'val_kl', 'adv_hist'} <= logged   # the run covered every kind of line
    missing = sorted(logged - documented_metrics())
    assert not missing, f'keys written to metrics.jsonl but not documented in nbs/metrics.ipynb: {missing}'

def test_configuration_page_lists_every_field():
    "The saved output of the generated table names every field with its default (rerun the notebook if not)"
    import lever_plus.core as core
    out = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in _cells('configuration.ipynb')
                  if c['cell_type'] == 'code' for o in c.get('outputs', []))
    missing = []
    for sec in dataclasses.fields(core.TrainConfig):
        sub = sec.type if isinstance(sec.type, type) else getattr(core, sec.type)
        for f in dataclasses.fields(sub):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if f'| `{sec.name}.{f.name}` |' not in out or f'`{default!r}`' not in out: missing.append(f'{sec.name}.{f.name}')
    assert not missing, f'nbs/configuration.ipynb: fields missing from the saved table (run the notebook): {missing}'

def test_example_config_loads():
    from lever_plus.core import load_config, TrainConfig
    import yaml
    cfg, raw = load_config(EXAMPLE), yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(cfg, TrainConfig)
    for sec, fields in raw.items():          # every value in the file reaches the config
        for k, v in fields.items(): assert getattr(getattr(cfg, sec), k) == v, f'{sec}.{k}'
    assert cfg.data.beam_data == 'data/beams_train.json' and cfg.curriculum.grpo_epochs == 3

def test_example_config_is_package_data(monkeypatch):
    "setup.py (run with setuptools.setup replaced) passes settings.ini's package_data, which matches the example"
    import runpy, setuptools
    got = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: got.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT/'setup.py'))
    pats = got.get('package_data', {}).get('lever_plus', [])
    assert any(EXAMPLE in (ROOT/'lever_plus').glob(p) for p in pats), \
        f'the wheel does not ship {EXAMPLE.relative_to(ROOT)}: package_data {pats} (settings.ini package_data, setup.py)'
