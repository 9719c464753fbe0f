"`lever_plus_eval` on checkpoints of every selector version: v0 (GPT-2 over pool ids), v2, v2_lora (LoRA on a v2)"
import json
from pathlib import Path
import pytest
import torch
from lever_plus.core import ModelConfig, TrainConfig, set_seed
from lever_plus.data import load_embeddings, load_datasets
from lever_plus.model import PointerSelector, load_selector
from lever_plus.v0 import GPTSelector
from lever_plus.lora import add_lora
from lever_plus.sim import SimScorer
from lever_plus.evaluate import select_sequences
from lever_plus.cli import eval_main
from conftest import run_script

BASE_ROWS = ['random', 'text-sim top-k', 'img-sim top-k', 'mix-sim top-k']


@pytest.fixture(scope='module')
def ckpts(world, tmp_path_factory) -> dict:
    "Random-init selectors of each version saved with save_pretrained (v2_lora: fresh adapters on the saved v2)"
    d = tmp_path_factory.mktemp('ckpts')
    store = load_embeddings(world)
    set_seed(0)
    v0 = GPTSelector(ModelConfig(version='v0', d_in=store.d_in, d_model=16, n_layers=1, n_heads=2, dropout=0.0, n_pool=len(store.pool)))
    v2 = PointerSelector(ModelConfig(d_in=store.d_in, d_model=16, n_layers=1, dropout=0.0))
    out = {'v0': v0.save_pretrained(d/'v0', TrainConfig(model=v0.cfg)), 'v2': v2.save_pretrained(d/'v2'/'best', TrainConfig(model=v2.cfg))}
    lora = add_lora(v2, rank=2, alpha=4.0, base_ckpt=str(out['v2']))
    out['v2_lora'] = lora.save_pretrained(d/'v2_lora', TrainConfig(model=lora.cfg))
    return out


def _direct(ckpt, world) -> list:
    "Per-query info scores of the selector's greedy picks on the test queries, computed without lever_plus_eval"
    ds = load_datasets(world/'beams_test.json', world, val_frac=0)['train']
    q, ids = select_sequences(load_selector(ckpt), ds)
    return SimScorer.from_dir(world).info_score(q, ids).double().tolist()


@pytest.mark.parametrize('version', ['v0', 'v2', 'v2_lora'])
def test_eval_each_version(world, ckpts, tmp_path, version):
    res = eval_main(['--ckpt', str(ckpts[version]), '--embeddings', str(world), '--n_boot', '50', '--out', str(tmp_path/'eval')])
    rows = res['shots'][2]
    name = f'SFT {version}'
    assert [r['method'] for r in rows] == BASE_ROWS + [name, 'beam oracle']
    r = next(r for r in rows if r['method'] == name)
    assert r['n'] == 16 and 0 <= r['acc'] <= 1 and r['info_ci'][0] <= r['info'] <= r['info_ci'][1]
    assert r['per_query_info'] == pytest.approx(_direct(ckpts[version], world), abs=1e-9)  # the checkpoint's own picks
    saved = json.loads((tmp_path/'eval'/'eval.json').read_text())
    assert saved['checkpoints'] == {name: str(ckpts[version])}
    assert [x['method'] for x in saved['shots']['2']] == BASE_ROWS + [name, 'beam oracle']


def test_eval_all_versions_command(world, ckpts, tmp_path):
    "The console script with the three checkpoints (the v2 one given as its run folder)"
    r = run_script('lever_plus_eval', ['--ckpt', ckpts['v0'], '--ckpt', ckpts['v2'].parent, '--ckpt', ckpts['v2_lora'],
                                       '--embeddings', world, '--n_boot', 50, '--out', tmp_path/'eval'])
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ('SFT v0', 'SFT v2', 'SFT v2_lora'): assert f'| {name} |' in r.stdout
    rows = {x['method']: x for x in json.loads((tmp_path/'eval'/'eval.json').read_text())['shots']['2']}
    assert list(rows) == BASE_ROWS + ['SFT v0', 'SFT v2', 'SFT v2_lora', 'beam oracle']
    # fresh adapters (B = 0): v2_lora picks exactly what its v2 base picks
    assert (rows['SFT v2_lora']['info'], rows['SFT v2_lora']['acc']) == (rows['SFT v2']['info'], rows['SFT v2']['acc'])
    assert rows['SFT v2']['frac_oracle'] < 1
