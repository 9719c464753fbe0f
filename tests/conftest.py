"Shared fixtures: a tiny simulated world and a tiny SFT checkpoint (made once per test session), and CLI helpers"
import os, subprocess, sys
from pathlib import Path
import pytest

TINY_WORLD = dict(K=16, n_pool=400, n_train=48, n_val=16, n_test=16)  # 80 queries, 3 batches of 16 per epoch


@pytest.fixture(scope='session')
def world(tmp_path_factory) -> Path:
    "Folder of a tiny simulated world: embeddings.safetensors, meta.json, world.*, beams_{train,val,test}.json"
    from lever_plus.beams import make_data
    d = tmp_path_factory.mktemp('world')
    make_data(d, seed=0, progress=False, **TINY_WORLD)
    return d


@pytest.fixture(scope='session')
def sft_ckpt(world, tmp_path_factory) -> Path:
    "`best/` folder of a tiny v2 selector (D=32, one attention layer, dropout 0.1) after one SFT epoch on `world`"
    from lever_plus.core import TrainConfig, ModelConfig, SFTConfig, DataConfig
    from lever_plus.sft import run_sft
    cfg = TrainConfig(model=ModelConfig(d_model=32, n_layers=1, dropout=0.1), sft=SFTConfig(epochs=1), data=DataConfig(batch_size=16))
    res = run_sft(world/'beams_train.json', world, tmp_path_factory.mktemp('sft'), 'v2', cfg, world/'beams_val.json')
    return Path(res['best_dir'])


def script(name:str) -> str:
    "Path of an installed console script (`lever_plus_grpo`, ...) next to this interpreter"
    p = Path(sys.executable).parent/name
    if not p.exists(): pytest.skip(f'console script {name} is not installed (pip install -e .)')
    return str(p)


def cli_env() -> dict:
    "Environment of CLI subprocesses: no bytecode writes, a non-interactive matplotlib backend"
    return {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', 'MPLBACKEND': 'Agg'}


def run_script(name:str, args, timeout:float=300, **kw) -> subprocess.CompletedProcess:
    "Run console script `name` with `args` (anything str()-able) and capture its output"
    return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=cli_env(), **kw)


def grpo_args(world:Path, sft:Path, out:Path, *extra) -> list:
    "Arguments of a small `lever_plus_grpo` run on the tiny world"
    return ['--sft_ckpt', sft, '--beam_data', world/'beams_train.json', '--val_beam_data', world/'beams_val.json',
            '--embeddings', world, '--output_dir', out, '--batch_size', 16, '--no_progress', *extra]
