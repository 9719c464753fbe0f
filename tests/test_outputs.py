"Output folders: a run never mixes with, deletes or overwrites what it did not write (CLI, end to end)"
import json, shutil, subprocess, time
from pathlib import Path
import torch
from conftest import run_script, script, cli_env, grpo_args, TINY_WORLD
from lever_plus.model import PointerSelector
from lever_plus.train import read_metrics

SHORT = ('--rce_epochs', 0, '--grpo_epochs', 1)


def _weights(d): return PointerSelector.from_pretrained(d).state_dict()
def _same(a, b): return all(torch.equal(a[k], b[k]) for k in a)
def _err(r): return r.stderr.strip().splitlines()[-1]


def test_used_folder_refused_overwrite_replaces(world, sft_ckpt, tmp_path):
    "A second run into a used folder is refused; --overwrite gives exactly a fresh run, with π_ref from the new SFT model"
    out, fresh = tmp_path/'v3', tmp_path/'fresh'
    assert run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 1)).returncode == 0
    (out/'notes.txt').write_text('mine')
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, *SHORT))
    assert r.returncode == 2 and 'holds an earlier run' in _err(r) and '--overwrite' in _err(r), r.stderr
    assert (out/'checkpoints'/'epoch_002').is_dir()  # nothing was touched
    other = tmp_path/'sft_b'  # another SFT model: a stale reference/ would show a large KL at the first step
    m = PointerSelector.from_pretrained(sft_ckpt); torch.manual_seed(1)
    for p in m.parameters(): p.data += 0.5 * torch.randn_like(p)
    m.save_pretrained(other)
    assert run_script('lever_plus_grpo', grpo_args(world, other, out, *SHORT, '--overwrite')).returncode == 0
    assert run_script('lever_plus_grpo', grpo_args(world, other, fresh, *SHORT)).returncode == 0
    step = next(x for x in read_metrics(out/'metrics.jsonl') if x['kind'] == 'step')
    assert (step['kl'], step['mean_ratio']) == (0.0, 1.0)
    assert sorted(p.name for p in (out/'checkpoints').iterdir()) == ['epoch_001']  # the old epoch_002 is gone
    assert _same(_weights(out/'best'), _weights(fresh/'best'))  # identical to a run in an empty folder
    assert (out/'notes.txt').read_text() == 'mine'  # the user's file stays


def test_output_containing_an_input_refused(world, sft_ckpt, tmp_path):
    sft_run = sft_ckpt.parent
    before = (sft_ckpt/'model.safetensors').read_bytes()
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, sft_run, *SHORT, '--overwrite'))
    assert r.returncode == 2 and 'contains the input sft_ckpt' in _err(r), r.stderr
    assert (sft_ckpt/'model.safetensors').read_bytes() == before and (sft_run/'metrics.jsonl').exists()


def test_cleanup_touches_only_our_temporary_files(world, sft_ckpt, tmp_path):
    out = tmp_path/'v3'; out.mkdir()
    for n in ('.tmp_build', '.old_config_1'): (out/n).mkdir()
    (out/'x.tmp').write_text('x'); (out/'.tmp_best_99999').mkdir()  # the last one looks like a killed run's
    assert run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, *SHORT)).returncode == 0
    assert all((out/n).exists() for n in ('.tmp_build', '.old_config_1', 'x.tmp')) and not (out/'config').exists()
    assert not (out/'.tmp_best_99999').exists()
    bad = tmp_path/'d'/'x'/'ckpt'; bad.mkdir(parents=True); (bad/'trainer_state.pt').write_bytes(b'x')
    (tmp_path/'d'/'.old_best_1').mkdir()
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, tmp_path/'d', *SHORT, '--resume', bad))
    assert r.returncode == 2 and 'must be RUN/checkpoints/epoch_NNN' in _err(r), r.stderr
    assert (tmp_path/'d'/'.old_best_1').is_dir() and not (tmp_path/'d'/'best').exists()  # the grandparent was not cleaned


def test_second_live_writer_refused(world, sft_ckpt, tmp_path):
    out = tmp_path/'v3'
    slow = subprocess.Popen([script('lever_plus_grpo'), *map(str, grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 6))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        for _ in range(600):
            if (out/'config.json').exists(): break
            time.sleep(0.1)
        r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, *SHORT, '--overwrite'))
        assert r.returncode == 2 and 'another lever_plus process (pid' in _err(r), r.stderr
    finally:
        slow.kill(); slow.wait()
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, *SHORT, '--overwrite'))  # a killed writer leaves no lock
    assert r.returncode == 0, r.stderr


def test_resume_refuses_changes(world, sft_ckpt, tmp_path):
    out = tmp_path/'v3'
    assert run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 1)).returncode == 0
    shutil.rmtree(out/'checkpoints'/'epoch_002')
    test_data = [a if a != world/'beams_train.json' else world/'beams_test.json' for a in grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 1)]
    r = run_script('lever_plus_grpo', [*test_data, '--resume', out])
    assert r.returncode == 2 and 'input beam_data was' in _err(r), r.stderr
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 1, '--sft.lr', 0.01, '--resume', out))
    assert r.returncode == 2 and 'sft.lr was 0.001 when the run started, now 0.01' in _err(r), r.stderr
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, tmp_path/'new', '--rce_epochs', 1, '--grpo_epochs', 1, '--resume', out))
    assert r.returncode == 2 and 'drop --output_dir' in _err(r), r.stderr
    r = run_script('lever_plus_grpo', grpo_args(world, sft_ckpt, out, '--rce_epochs', 1, '--grpo_epochs', 1, '--device', 'cpu', '--resume', out))
    assert r.returncode == 0, r.stderr  # the device may change
    assert (out/'checkpoints'/'epoch_002').is_dir()


def test_sft_and_make_data_refuse_a_used_folder(world, tmp_path):
    sft = ['--beam_data', world/'beams_train.json', '--embeddings', world, '--output_dir', tmp_path/'sft', '--sft.epochs', 1, '--d_model', 16]
    assert run_script('lever_plus_sft', sft).returncode == 0
    n = len((tmp_path/'sft'/'metrics.jsonl').read_text().splitlines())
    r = run_script('lever_plus_sft', sft)
    assert r.returncode == 2 and 'holds an earlier run' in _err(r), r.stderr
    assert run_script('lever_plus_sft', [*sft, '--overwrite']).returncode == 0
    assert len((tmp_path/'sft'/'metrics.jsonl').read_text().splitlines()) == n  # replaced, not appended to
    world_args = ['--no_progress', *[x for k, v in TINY_WORLD.items() for x in (f'--{k}', v)]]
    d = tmp_path/'data'
    assert run_script('lever_plus_make_data', ['--out', d, '--rl', '--n_unlabeled', 8, *world_args]).returncode == 0
    r = run_script('lever_plus_make_data', ['--out', d, '--seed', 1, *world_args])
    assert r.returncode == 2 and 'holds an earlier run' in _err(r), r.stderr
    assert run_script('lever_plus_make_data', ['--out', d, '--seed', 1, '--overwrite', *world_args]).returncode == 0
    assert not list(d.glob('beams_*_rl.json')) and not (d/'queries_unlabeled.json').exists()  # no file of the old world is left
    assert json.loads((d/'world.json').read_text())['seed'] == 1
