"Two torchrun processes (gloo, CPU) do what one process does: same weights (post-training, SFT), same files (beam data)"
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
import lever_plus
from lever_plus.testing import run_ddp_check, sft_ddp_check, make_data_ddp_check
from lever_plus.checkpoint import resume_checkpoint
from conftest import cli_env, grpo_args, script

def test_ddp_two_processes_match_one(tmp_path):
    w = run_ddp_check(tmp_path, 2)
    moved = max(float((w[1][k] - w['initial'][k]).abs().max()) for k in w[1])
    diff = max(float((w[1][k] - w[2][k]).abs().max()) for k in w[1])
    assert moved > 1e-2, moved  # training changed the weights
    assert diff < 1e-3, diff  # …identically on 1 and 2 processes, up to float summation order (see 11a_distributed)

def test_sft_two_processes_match_one(tmp_path):
    "`lever_plus_sft` under torchrun (2 ranks holding 3 and 4 of each batch of 7) = `lever_plus_sft` in one process"
    w = sft_ddp_check(tmp_path, 2)
    assert set(w[1]) == set(w[2]) == set(w['initial'])
    moved = max(float((w[1][k] - w['initial'][k]).abs().max()) for k in w[1])
    diff = max(float((w[1][k] - w[2][k]).abs().max()) for k in w[1])
    assert moved > 1e-2, moved  # SFT changed the weights
    assert diff < 1e-3, diff  # …identically on 1 and 2 processes, up to float summation order

def test_make_data_two_processes_byte_identical(tmp_path):
    "`lever_plus_make_data --rl` under torchrun (uneven and empty query slices) writes the files of one process, byte for byte"
    files = make_data_ddp_check(tmp_path, 2)
    assert {'beams_train.json', 'beams_val.json', 'beams_test.json', 'beams_train_rl.json', 'meta.json', 'world.json'} <= set(files)
    for name, (one, two) in files.items():
        assert one is not None and one == two, name


def _rank_pid(launcher:int, rank:int) -> int|None:
    "pid of the torchrun worker of `rank` among the descendants of process `launcher` (Linux /proc), or None"
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: env = (p/'environ').read_bytes().split(b'\0')
        except OSError: continue
        if b'TORCHELASTIC_RUN_ID' not in b''.join(env) or f'RANK={rank}'.encode() not in env: continue
        q = p.name
        while q not in ('0', '1'):  # walk up to the launcher
            try: q = (Path('/proc')/q/'stat').read_text().rsplit(')', 1)[1].split()[1]
            except OSError: break
            if q == str(launcher): return int(p.name)
    return None


@pytest.mark.skipif(not Path('/proc/self/environ').exists(), reason='finds the ranks through /proc (Linux)')
@pytest.mark.parametrize('sig', ['SIGSTOP', 'SIGKILL'])
def test_a_stopped_or_killed_rank_ends_the_job_with_a_resume_hint(world, sft_ckpt, tmp_path, sig):
    "One of 2 gloo ranks stopped (or killed) after epoch 1: the other gives up after run.dist_timeout and says how to resume"
    out = tmp_path/'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '--no-python', script('lever_plus_grpo'),
           *map(str, grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 3, '--run.dist_timeout', 10))]
    env = {k: v for k, v in cli_env().items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not (out/'checkpoints'/'epoch_001').is_dir():
            assert p.poll() is None, p.communicate()[1][-3000:]
            assert time.monotonic() - t0 < 240, 'epoch 1 did not finish'
            time.sleep(0.05)
        pid = _rank_pid(p.pid, 1)
        assert pid is not None
        os.kill(pid, getattr(signal, sig))
        _, err = p.communicate(timeout=120)  # 10 s to notice, torchrun's 30 s grace for the stopped rank, start-up
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode != 0
    lines = [l for l in err.splitlines() if l.startswith('error: rank 0 of 2')]
    assert len(lines) == 1, err[-3000:]
    assert 'another rank stopped answering' in lines[0] and f'`--resume {out}` continues from the last one' in lines[0], lines[0]
    assert f'File "{Path(lever_plus.__file__).parent}' not in err, err[-3000:]  # no traceback from this package's code
    assert resume_checkpoint(out)[1].name.startswith('epoch_')  # the hint's folder resumes
