"""Bad values refused at the door: each case exits 2 with one line naming the flag / file / field, and writes nothing.

One table: (case id, command, arguments, expected fragment of the message). `{world}`, `{sft}`, `{tmp}` are filled in."""
import json
from pathlib import Path
import pytest
from conftest import run_script, grpo_args

GRPO, SFT, EVAL = 'lever_plus_grpo', 'lever_plus_sft', 'lever_plus_eval'
CASES = [
    ('grpo_lr_ratio_negative', GRPO, ['--grpo.lr_ratio', -1], 'grpo.lr_ratio must be > 0'),
    ('grpo_lr_ratio_zero', GRPO, ['--grpo.lr_ratio', 0], 'grpo.lr_ratio must be > 0'),
    ('log_ratio_clip_negative', GRPO, ['--grpo.log_ratio_clip', -1], 'grpo.log_ratio_clip must be > 0'),
    ('adv_eps_negative', GRPO, ['--grpo.adv_eps', -1e-3], 'grpo.adv_eps must be >= 0'),
    ('kl_ceiling_negative', GRPO, ['--run.kl_ceiling', -1], 'run.kl_ceiling must be > 0'),
    ('beta_inf_fixed', GRPO, ['--beta', 'inf', '--control.mode', 'fixed'], 'grpo.beta must be a finite number, got inf'),
    ('tau_start_inf', GRPO, ['--rce.tau_start', 'inf'], 'rce.tau_start must be a finite number'),
    ('beta_nan', GRPO, ['--beta', 'nan'], 'grpo.beta must be a finite number, got nan'),
    ('seed_negative', GRPO, ['--seed', -1], 'run.seed must be in [0, 2**32)'),
    ('seed_too_large', GRPO, ['--seed', 2 ** 32 + 1], 'run.seed must be in [0, 2**32)'),
    ('horizon_zero', GRPO, ['--control.horizon', 0, '--control.mode', 'proportional'], 'control.horizon must be >= 1'),
    ('temp_factor_below_one', GRPO, ['--control.temp_factor', 0.5], 'control.temp_factor must be >= 1'),
    ('reward_weights_zero', GRPO, ['--reward.w_beam', 0], 'reward weights must be >= 0 with one > 0'),
    ('weight_decay_negative', SFT, ['--sft.weight_decay', -0.1], 'sft.weight_decay must be >= 0'),
    ('rce_label_smoothing', GRPO, ['--rce.label_smoothing', 1.5], 'rce.label_smoothing must be in [0, 1)'),
    ('config_duplicate_key_json', GRPO, ['--config', '{tmp}/dup.json'], 'dup.json: key `beta` appears twice'),
    ('config_duplicate_key_yaml', GRPO, ['--config', '{tmp}/dup.yaml'], 'dup.yaml: key `beta` appears twice'),
    ('config_yaml_sci_string', GRPO, ['--config', '{tmp}/sci.yaml'], "YAML reads 1e-2 as a string"),
    ('eval_n_boot_zero', EVAL, ['--n_boot', 0], '--n_boot must be >= 1'),
    ('eval_device_tpu', EVAL, ['--device', 'tpu'], "unknown device 'tpu'"),
    ('no_epochs', GRPO, ['--rce_epochs', 0, '--grpo_epochs', 0], 'would train nothing'),
    ('arabic_indic_query_key', GRPO, ['--beam_data', '{tmp}/arabic.json'], 'the key is not a query id'),
    ('score_beyond_float32', GRPO, ['--beam_data', '{tmp}/huge.json'], 'beyond float32'),
    ('embeddings_empty_pt', SFT, ['--embeddings', '{tmp}/empty.pt'], 'empty.pt: empty file (0 bytes'),
    ('embeddings_truncated_pt', SFT, ['--embeddings', '{tmp}/cut.pt'], 'cut.pt: not a readable torch file'),
    ('checkpoint_config_unreadable', EVAL, ['--ckpt', '{tmp}/ckpt'], "config.json: cannot read ("),
    ('K_contradicts_data', GRPO, ['--K', 32], '--K 32: '),
    ('shot_num_contradicts_data', SFT, ['--shot_num', 3], '--shot_num 3: '),
    ('sft_lr_beyond_float32', SFT, ['--sft.lr', 1e300], 'sft.lr must be a finite number, got 1e+300 (training runs in float32'),
    ('dist_timeout_zero', GRPO, ['--run.dist_timeout', 0], 'run.dist_timeout must be > 0 seconds'),
    ('train_queries_in_validation', GRPO, ['--val_beam_data', '{world}/beams_train.json'], 'are also validation queries of'),
]
FILES = {'dup.json': '{"grpo": {"beta": 0.1, "beta": 0.2}}', 'dup.yaml': 'grpo:\n  beta: 0.1\n  beta: 0.2\n', 'sci.yaml': 'grpo:\n  beta: 1e-2\n'}


def _corrupt_beams(world, tmp):
    "Beam files that read wrongly unless refused: an Arabic-Indic query key, a score beyond float32"
    d = json.loads((world/'beams_train.json').read_text())
    k0 = next(k for k in d if k != '_meta')
    arabic = {('\u0661' if k == k0 else '') + k if k == k0 else k: v for k, v in d.items()}  # '١' + key: \\d would read it as a number
    (tmp/'arabic.json').write_text(json.dumps(arabic, ensure_ascii=False))
    huge = dict(d); huge[k0] = dict(d[k0], score_list=[1e308] + d[k0]['score_list'][1:])
    (tmp/'huge.json').write_text(json.dumps(huge))


def _broken_files(tmp, sft):
    "A 0-byte and a half-written .pt, and a checkpoint whose config.json cannot be read (a folder in its place)"
    import shutil, torch
    (tmp/'empty.pt').write_bytes(b'')
    torch.save(torch.randn(50, 8), tmp/'whole.pt'); whole = (tmp/'whole.pt').read_bytes(); (tmp/'cut.pt').write_bytes(whole[:len(whole) // 2])
    shutil.copytree(sft, tmp/'ckpt'); (tmp/'ckpt'/'config.json').unlink(); (tmp/'ckpt'/'config.json').mkdir()


def _args(cmd, extra, world, sft, out):
    if cmd == GRPO:
        a = grpo_args(world, sft, out, *extra)
        for flag in ('--beam_data', '--val_beam_data'):  # the case's file replaces the world's
            if flag in extra[::2]: i = a.index(flag); del a[i:i + 2]
        return a
    if cmd == SFT:
        emb = [] if '--embeddings' in extra[::2] else ['--embeddings', world]
        return ['--beam_data', world/'beams_train.json', *emb, '--output_dir', out, '--no_progress', *extra]
    ck = [] if '--ckpt' in extra[::2] else ['--ckpt', sft]
    return [*ck, '--embeddings', world, '--beam_data', world, '--out', out, *extra]


@pytest.mark.parametrize('case,cmd,extra,expect', CASES, ids=[c[0] for c in CASES])
def test_refused_at_the_door(case, cmd, extra, expect, world, sft_ckpt, tmp_path):
    for name, text in FILES.items(): (tmp_path/name).write_text(text)
    _corrupt_beams(world, tmp_path)
    _broken_files(tmp_path, sft_ckpt)
    extra = [str(a).format(tmp=tmp_path, world=world) for a in extra]
    out = tmp_path/'out'
    r = run_script(cmd, _args(cmd, extra, world, sft_ckpt, out), timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (case, r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and expect in lines[0], (case, r.stderr[-2000:])
    assert not out.exists() or not any(out.iterdir()), (case, sorted(p.name for p in out.iterdir()))


def test_demo_keeps_zero_sft_epochs(tmp_path):
    "`--sft_epochs 0` means no SFT epoch (the untrained selector), not the default"
    r = run_script('lever_plus_demo', ['--quick', '--out', tmp_path/'d', '--sft_epochs', 0, '--no_progress'], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path/'d'/'sft_v2'/'best'/'metrics.json').read_text())['epoch'] == 0  # the untrained model
    assert not (tmp_path/'d'/'sft_v2'/'metrics.jsonl').exists()  # no epoch ran


def test_no_epoch_under_the_kl_ceiling(world, sft_ckpt, tmp_path):
    "A run whose every epoch is over the KL ceiling exits 2 saying so; its epochs stay in checkpoints/"
    out = tmp_path/'o'
    r = run_script(GRPO, grpo_args(world, sft_ckpt, out, '--rce_epochs', 0, '--grpo_epochs', 1, '--online_samples', 4, '--grpo.lr_ratio', 3,
                                   '--kl_ceiling', 1e-12), timeout=300)
    assert r.returncode == 2 and 'no epoch had a validation KL under run.kl_ceiling=1e-12' in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and not (out/'best').exists() and (out/'checkpoints'/'epoch_001').is_dir()
