"""Bad inputs: each one gives ONE clear error — a `LeverPlusError` subclass whose message names the file, the record
and the field — which the console scripts print as `error: <message>` with exit status 2 (no traceback), and
nothing half-written is left in the output folder."""
import functools, hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file, save_file
from lever_plus import cli
from lever_plus.core import (BeamDataError, CheckpointError, ConfigError, DataConfig, EmbeddingError, LeverPlusError,
                             OutputError, SFTConfig, TrainConfig, CurriculumConfig, RunConfig)
from conftest import grpo_args, run_script, script, cli_env

# ---------------------------------------------------------------------------------------------------------------
# helpers

class Ctx:
    "What a case needs: a scratch folder, the tiny world, the SFT checkpoint, a finished run to corrupt"
    def __init__(self, tmp, world, sft, run):
        self.tmp, self.world, self.sft, self._run = tmp, world, sft, run
        self.out = tmp/'out'  # the output folder of the failing command: must not appear
        self.train = json.loads((world/'beams_train.json').read_text())
        self.k = next(iter(self.train))  # the first query key of the training file

    def beams(self, name, mutate=None, text=None) -> Path:
        "A copy of the training beams changed by `mutate(records, first_key)` (or replaced by `text`), written to `name`"
        p = self.tmp/name
        if text is None:
            d = json.loads(json.dumps(self.train)); mutate(d, self.k); text = json.dumps(d)
        p.write_text(text)
        return p

    def grpo(self, beams=None, emb=None, sft=None, out=None, extra=()) -> list:
        argv = grpo_args(self.world, sft or self.sft, out or self.out, '--rce_epochs', 1, '--grpo_epochs', 0, *extra)
        if beams is not None: argv[argv.index('--beam_data') + 1] = beams
        if emb is not None: argv[argv.index('--embeddings') + 1] = emb
        return [str(a) for a in argv]

    def copy_world(self, name) -> Path:
        d = self.tmp/name; shutil.copytree(self.world, d)
        return d

    def copy_sft(self, name) -> Path:
        d = self.tmp/name; shutil.copytree(self.sft, d)
        return d

    def run(self) -> Path:
        "A private copy of a finished 1-epoch run (for --resume cases)"
        d = self.tmp/'run'
        if not d.exists(): shutil.copytree(self._run, d)
        return d


def tree(d:Path) -> dict:
    "relative path → sha1 of every file under `d` (what a failing command must leave untouched)"
    # run_post_train re-writes the run's config.json (atomically) before it looks at the checkpoint: not compared
    return {str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(d.rglob('*'))
            if p.is_file() and p.relative_to(d) != Path('config.json')}


def console(monkeypatch, capsys, entry, argv) -> tuple:
    "Run a console-script entry point in-process (exactly what the installed script runs) → (exit status, stderr)"
    monkeypatch.setattr(sys, 'argv', [entry.__name__, *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e: entry()
    return e.value.code, capsys.readouterr().err


@pytest.fixture(scope='module')
def finished_run(world, sft_ckpt, tmp_path_factory) -> Path:
    "A completed 1-epoch (RCE) post-training run folder: config.json, reference/, best/, checkpoints/epoch_001, metrics.jsonl"
    from lever_plus.train import run_post_train
    out = tmp_path_factory.mktemp('finished')/'run'
    cfg = TrainConfig(data=DataConfig(batch_size=16), curriculum=CurriculumConfig(rce_epochs=1, grpo_epochs=0))
    run_post_train(sft_ckpt, world/'beams_train.json', world, out, cfg, world/'beams_val.json', progress=False)
    return out


@pytest.fixture(scope='module', autouse=True)
def _fast_parsers():
    "Build each argument parser's help texts once (fastcore's `docments` re-parses the source on every call)"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, 'docments', functools.cache(cli.docments))
        yield


@pytest.fixture
def ctx(tmp_path, world, sft_ckpt, finished_run): return Ctx(tmp_path, world, sft_ckpt, finished_run)

# ---------------------------------------------------------------------------------------------------------------
# lever_plus_grpo: one case = (id, argv builder, exception class, fragments the message must contain)

def _pickle_pt(c):
    class Marker:  # unpickling this would create a folder: torch.load(weights_only=True) must refuse it
        def __reduce__(self): return (os.makedirs, (str(c.tmp/'PWNED'),))
    torch.save(Marker(), c.tmp/'evil.pt')
    return c.grpo(emb=c.tmp/'evil.pt')

def _dict_pt(c):
    torch.save({'feats': torch.zeros(400, 128)}, c.tmp/'dict.pt')
    return c.grpo(emb=c.tmp/'dict.pt')

def _small_pt(c):
    torch.save(torch.randn(50, 128), c.tmp/'small.pt')  # an upstream [N, d] tensor with too few rows for the ids used
    return c.grpo(emb=c.tmp/'small.pt')

def _dim_mismatch(c):
    from lever_plus.data import save_embeddings
    t = load_file(str(c.world/'embeddings.safetensors'))
    meta = json.loads((c.world/'meta.json').read_text())
    save_embeddings(c.tmp/'emb32', t['pool_img'][:, :32], t['pool_txt'], t['query_img'][:, :32], t['query_txt'], {'splits': meta['splits']})
    return c.grpo(emb=c.tmp/'emb32')

def _meta_mismatch(c):
    d = c.copy_world('emb_meta'); m = json.loads((d/'meta.json').read_text()); m['d_img'] = 7
    (d/'meta.json').write_text(json.dumps(m))
    return c.grpo(emb=d)

def _nan_embedding(c):
    d = c.copy_world('emb_nan'); t = load_file(str(d/'embeddings.safetensors')); t['pool_txt'][5, 3] = float('nan')
    save_file(t, str(d/'embeddings.safetensors'))
    return c.grpo(emb=d)

def _truncated_embeddings(c):
    d = c.copy_world('emb_cut'); f = d/'embeddings.safetensors'; f.write_bytes(f.read_bytes()[:5000])
    return c.grpo(emb=d)

def _truncated_sft(c):
    d = c.copy_sft('sft_cut'); f = d/'model.safetensors'; f.write_bytes(f.read_bytes()[:-100])
    return c.grpo(sft=d)

def _sft_unknown_field(c):
    d = c.copy_sft('sft_cfg'); cf = json.loads((d/'config.json').read_text()); cf['model']['colour'] = 'red'
    (d/'config.json').write_text(json.dumps(cf))
    return c.grpo(sft=d)

def _sft_shape_mismatch(c):
    d = c.copy_sft('sft_shape'); cf = json.loads((d/'config.json').read_text()); cf['model']['d_model'] = 16
    (d/'config.json').write_text(json.dumps(cf))
    return c.grpo(sft=d)

def _config_file(name, text):
    def build(c):
        (c.tmp/name).write_text(text)
        return c.grpo(extra=['--config', c.tmp/name])
    return build

def _val_three_shots(c):
    v = json.loads((c.world/'beams_val.json').read_text()); k = next(iter(v))
    pool = v[k]['candidate_pool_ids']
    v[k]['id_list'] = [[*b[:-1], next(i for i in pool if i not in b), b[-1]] for b in v[k]['id_list']]
    (c.tmp/'val3.json').write_text(json.dumps(v))
    argv = c.grpo(); argv[argv.index('--val_beam_data') + 1] = str(c.tmp/'val3.json')
    return argv

def _beam_not_in_pool(d, k):
    pool, b0 = d[k]['candidate_pool_ids'], d[k]['id_list'][0][0]
    pool[pool.index(b0)] = next(i for i in range(400) if i not in pool)

def _no_embedding_row(d, k):
    d['9999'] = {**d[k], 'id_list': [b[:-1] + [9999] for b in d[k]['id_list']]}

def _with_nan(c, lit):
    s = c.train[c.k]['score_list'][1]
    return c.beams(f'{lit}.json', text=json.dumps(c.train).replace(f'{s}', lit, 1))

def _out_is_file(c):
    c.out.write_text('not a folder')
    return c.grpo()

def _out_under_file(c):
    (c.tmp/'afile').write_text('x'); c.out = c.tmp/'afile'/'run'
    return c.grpo()

def _resume_corrupt_state(c):
    r = c.run(); f = r/'checkpoints'/'epoch_001'/'trainer_state.pt'; f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    c.out = r
    return c.grpo(out=r, extra=['--resume', r])

def _resume_truncated_weights(c):
    r = c.run(); ck = r/'checkpoints'/'epoch_001'; f = ck/'model.safetensors'; f.write_bytes(f.read_bytes()[:-64])
    c.out = r
    return c.grpo(out=r, extra=['--resume', ck])

def _resume_nothing(c):
    r = c.tmp/'empty_run'; r.mkdir(); (r/'checkpoints').mkdir(); c.out = r
    return c.grpo(out=r, extra=['--resume', r])

K = lambda c: f'query "{c.k}"'
GRPO_CASES = [
    # beam data files
    ('malformed_json', lambda c: c.grpo(c.beams('cut.json', text=json.dumps(c.train)[:700])), BeamDataError,
     lambda c: ['cut.json: not valid JSON', 'line 1, column', 'truncated']),
    ('empty_file', lambda c: c.grpo(c.beams('empty.json', text='')), BeamDataError, lambda c: ['empty.json: empty file']),
    ('top_level_list', lambda c: c.grpo(c.beams('list.json', text='[1, 2]')), BeamDataError,
     lambda c: ['list.json: the top level must be a JSON object keyed by query id, got a list']),
    ('duplicate_key', lambda c: c.grpo(c.beams('dupkey.json', text='{"%s": %s, "%s": %s}' % (c.k, json.dumps(c.train[c.k]), c.k, json.dumps(c.train[c.k])))),
     BeamDataError, lambda c: ['dupkey.json', f'key `{c.k}` appears twice']),
    ('missing_id_list', lambda c: c.grpo(c.beams('noid.json', lambda d, k: d[k].pop('id_list'))), BeamDataError,
     lambda c: ['noid.json', K(c), 'field `id_list`: missing']),
    ('missing_score_list', lambda c: c.grpo(c.beams('nosc.json', lambda d, k: d[k].pop('score_list'))), BeamDataError,
     lambda c: ['nosc.json', K(c), 'field `score_list`: missing']),
    ('ragged_beams', lambda c: c.grpo(c.beams('ragged.json', lambda d, k: d[k]['id_list'][1].insert(0, 399))), BeamDataError,
     lambda c: ['ragged.json', K(c), 'field `id_list`', 'ragged beams: beam 0 has 2 shots but beam 1 has 3']),
    ('id_out_of_range', lambda c: c.grpo(c.beams('oor.json', lambda d, k: d[k]['id_list'][0].__setitem__(0, 99999))), BeamDataError,
     lambda c: ['oor.json', K(c), 'field `id_list`', 'holds id 99999 but the pool has only 400 rows']),
    ('negative_id', lambda c: c.grpo(c.beams('neg.json', lambda d, k: d[k]['id_list'][0].__setitem__(0, -3))), BeamDataError,
     lambda c: ['neg.json', K(c), 'field `id_list`', 'negative id -3']),
    ('duplicate_id_in_beam', lambda c: c.grpo(c.beams('dup.json', lambda d, k: d[k]['id_list'][0].__setitem__(1, d[k]['id_list'][0][0]))),
     BeamDataError, lambda c: ['dup.json', K(c), 'field `id_list`', f"repeats id {c.train[c.k]['id_list'][0][0]}"]),
    ('string_id', lambda c: c.grpo(c.beams('strid.json', lambda d, k: d[k]['id_list'][0].__setitem__(0, '7'))), BeamDataError,
     lambda c: ['strid.json', K(c), 'field `id_list`', 'integer ids']),
    ('beam_without_query_id', lambda c: c.grpo(c.beams('noq.json', lambda d, k: d[k]['id_list'][0].__setitem__(-1, 399))), BeamDataError,
     lambda c: ['noq.json', K(c), 'field `id_list`', 'does not end with the query id']),
    ('nan_score', lambda c: c.grpo(_with_nan(c, 'NaN')), BeamDataError, lambda c: ['NaN.json', K(c), 'field `score_list`', 'nan, not a finite number']),
    ('inf_score', lambda c: c.grpo(_with_nan(c, 'Infinity')), BeamDataError, lambda c: ['Infinity.json', K(c), 'field `score_list`', 'inf, not a finite number']),
    ('score_count', lambda c: c.grpo(c.beams('slen.json', lambda d, k: d[k]['score_list'].pop())), BeamDataError,
     lambda c: ['slen.json', K(c), 'field `score_list`', 'has 4 scores for 5 beams']),
    ('key_not_a_query_id', lambda c: c.grpo(c.beams('key.json', lambda d, k: d.__setitem__('q17', d[k]))), BeamDataError,
     lambda c: ['key.json', 'query "q17"', 'not a query id']),
    ('query_without_embedding', lambda c: c.grpo(c.beams('noemb.json', _no_embedding_row)), BeamDataError,
     lambda c: ['noemb.json', 'query "9999"', 'has no embedding row', 'has 80 queries']),
    ('beam_id_not_in_pool', lambda c: c.grpo(c.beams('pool.json', _beam_not_in_pool)), BeamDataError,
     lambda c: ['pool.json', K(c), 'field `candidate_pool_ids`', f"does not contain beam id {c.train[c.k]['id_list'][0][0]}"]),
    ('val_shot_count', _val_three_shots, BeamDataError, lambda c: ['val3.json', 'field `id_list`', 'beams have 3 shots but shot_num=2']),
    ('missing_beam_file', lambda c: c.grpo(c.tmp/'nope.json'), BeamDataError, lambda c: ['nope.json: beam data file not found']),
    # embeddings
    ('pickled_object_pt', _pickle_pt, EmbeddingError, lambda c: ['evil.pt', 'refused by torch.load(weights_only=True)']),
    ('dict_pt', _dict_pt, EmbeddingError, lambda c: ['dict.pt: holds a dict, expected one [N, d] tensor']),
    ('ids_beyond_pt_rows', _small_pt, BeamDataError, lambda c: ['beams_train.json', 'field `id_list`', 'the pool has only 50 rows']),
    ('embedding_dim_vs_checkpoint', _dim_mismatch, EmbeddingError, lambda c: ['emb32', 'd_in=96', 'expects d_in=128']),
    ('meta_vs_tensors', _meta_mismatch, EmbeddingError, lambda c: ['emb_meta/meta.json', '`d_img` is 7 but the tensors have 64']),
    ('nan_embedding', _nan_embedding, EmbeddingError, lambda c: ['emb_nan/embeddings.safetensors', 'tensor `pool_txt` holds NaN/inf (first in row 5)']),
    ('truncated_embeddings', _truncated_embeddings, EmbeddingError, lambda c: ['emb_cut/embeddings.safetensors: not a readable safetensors file']),
    # checkpoints
    ('truncated_sft_checkpoint', _truncated_sft, CheckpointError, lambda c: ['sft_cut/model.safetensors', 'cannot read safetensors', 'truncated']),
    ('sft_config_unknown_field', _sft_unknown_field, ConfigError, lambda c: ['sft_cfg/config.json', 'unknown field `model.colour`']),
    ('sft_config_vs_weights', _sft_shape_mismatch, CheckpointError,
     lambda c: ['sft_shape/model.safetensors', 'weights do not match config.json', 'in the file but', 'in the model']),
    ('missing_sft_checkpoint', lambda c: c.grpo(sft=c.tmp/'no_sft'), CheckpointError, lambda c: ['no_sft/config.json: not found']),
    ('resume_corrupt_trainer_state', _resume_corrupt_state, CheckpointError, lambda c: ['epoch_001/trainer_state.pt: cannot be read', 'truncated or corrupt']),
    ('resume_truncated_weights', _resume_truncated_weights, CheckpointError, lambda c: ['epoch_001/model.safetensors', 'truncated']),
    ('resume_without_checkpoint', _resume_nothing, CheckpointError, lambda c: ['empty_run']),
    # configuration
    ('config_unknown_field', _config_file('c1.json', '{"grpo": {"betta": 0.3}}'), ConfigError,
     lambda c: ['c1.json: unknown field `grpo.betta` (did you mean `grpo.beta`?)']),
    ('config_unknown_section', _config_file('c2.json', '{"optimiser": {}}'), ConfigError, lambda c: ['c2.json: unknown field `optimiser`']),
    ('config_wrong_type', _config_file('c3.json', '{"run": {"seed": "zero"}}'), ConfigError, lambda c: ['c3.json: field `run.seed` expects int, got str']),
    ('config_bad_yaml', _config_file('c4.yaml', 'grpo: [1, 2\n'), ConfigError, lambda c: ['c4.yaml: not valid YAML']),
    ('config_bad_value', _config_file('c5.json', '{"grpo": {"adv_mode": "zcore"}}'), ConfigError, lambda c: ['c5.json', 'grpo.adv_mode must be one of', "'zcore'"]),
    ('flag_wrong_type', lambda c: c.grpo(extra=['--beta', 'abc']), ConfigError, lambda c: ['--grpo.beta', "'abc'"]),
    ('negative_epochs', lambda c: c.grpo(extra=['--grpo_epochs', '-1']), ConfigError, lambda c: ['curriculum.grpo_epochs must be >= 0, got -1']),
    ('shot_num_above_K', lambda c: c.grpo(extra=['--K', '8', '--shot_num', '9']), ConfigError, lambda c: ['data.shot_num must be in [1, K=8], got 9']),
    ('unknown_device', lambda c: c.grpo(extra=['--device', 'tpu']), ConfigError, lambda c: ["run.device: unknown device 'tpu'"]),
    # output folder
    ('output_dir_is_a_file', _out_is_file, ConfigError, lambda c: [f'{c.out}: output_dir exists and is not a folder']),
    ('output_dir_under_a_file', _out_under_file, OutputError, lambda c: [f"{c.tmp/'afile'} is a file, not a folder"]),
    # queries without beams (data.unlabeled): a query-pool file
    ('unlabeled_without_online', lambda c: c.grpo(extra=['--unlabeled', _pools(c, 'u1.json', {48: list(range(16))})]), ConfigError,
     lambda c: ['u1.json: queries without beams are only used by online GRPO', 'grpo.online_samples >= 2']),
    ('unlabeled_id_out_of_range', lambda c: c.grpo(extra=['--online_samples', '4', '--unlabeled', _pools(c, 'u2.json', {48: [99999] + list(range(15))})]),
     BeamDataError, lambda c: ['u2.json: query "48", field `candidate_pool_ids`', 'id 99999 is outside the pool [0, 400)']),
    ('unlabeled_is_labeled', lambda c: c.grpo(extra=['--online_samples', '4', '--unlabeled', _pools(c, 'u3.json', {int(c.k): list(range(16))})]),
     ConfigError, lambda c: [f'u3.json: query {c.k} is also in', 'unlabeled queries must be new queries']),
    ('unlabeled_pool_size', lambda c: c.grpo(extra=['--online_samples', '4', '--unlabeled', _pools(c, 'u4.json', {48: list(range(8))})]),
     BeamDataError, lambda c: ['u4.json: query "48", field `candidate_pool_ids`: has 8 ids but K=16']),
]


def _pools(c, name, pools) -> Path:
    "A query-pool file (queries without beams) in the scratch folder"
    from lever_plus.data import write_query_pools
    return write_query_pools(c.tmp/name, pools)


def _check_no_output(c, before):
    if before is None:  # a fresh output folder: nothing at all may appear (or, if it was a file, it is unchanged)
        assert not c.out.exists() or c.out.is_file(), sorted(p.name for p in c.out.rglob('*'))
    else: assert tree(c.out) == before  # an existing run folder: not a byte changed
    assert not (c.tmp/'PWNED').exists()  # nothing was unpickled


@pytest.mark.parametrize('name,build,exc,frags', GRPO_CASES, ids=[x.values[0] if hasattr(x, 'values') else x[0] for x in GRPO_CASES])
def test_grpo_bad_input(name, build, exc, frags, ctx, monkeypatch, capsys):
    argv = build(ctx)
    before = tree(ctx.out) if ctx.out.is_dir() else None
    with pytest.raises(exc) as e: cli.grpo_main(argv)
    msg = str(e.value)
    for f in frags(ctx): assert f in msg, f'{f!r} not in {msg!r}'
    assert '\n' not in msg.strip() or name == 'config_bad_yaml', msg  # one message, not a dump
    _check_no_output(ctx, before)
    # the installed entry point prints exactly that message, exit status 2, no traceback
    rc, err = console(monkeypatch, capsys, cli.grpo, argv)
    assert (rc, err) == (2, f'error: {msg}\n')
    _check_no_output(ctx, before)


def test_at_least_twenty_distinct_cases():
    names = [c.values[0] if hasattr(c, 'values') else c[0] for c in GRPO_CASES]
    assert len(set(names)) == len(names) >= 20

# ---------------------------------------------------------------------------------------------------------------
# lever_plus_make_data

MD = ['--n_pool', '100', '--n_train', '8', '--n_val', '4', '--n_test', '4', '--no_progress']
MAKE_DATA_CASES = [
    ('shot_num_above_K', ['--K', '4', '--shot_num', '5'], 'shot_num (5) must be in [1, K=4]'),
    ('K_above_pool', ['--K', '400'], 'K (400) must be in [1, n_pool=100]'),
    ('unknown_sampler', ['--sampler', 'nearest'], "unknown sampler 'nearest'; valid: 'rand', 'text_sim', 'img_sim', 'mix'"),
    ('negative_world_size', ['--n_train', '-3'], 'world.n_train must be >= 1, got -3'),
    ('zero_beam_width', ['--beam_width', '0'], 'beam_width must be >= 1, got 0'),
]


@pytest.mark.parametrize('name,extra,frag', MAKE_DATA_CASES, ids=[x[0] for x in MAKE_DATA_CASES])
def test_make_data_bad_input(name, extra, frag, tmp_path, monkeypatch, capsys):
    out = tmp_path/'data'
    rc, err = console(monkeypatch, capsys, cli.make_data, ['--out', str(out), *MD, *extra])
    assert rc == 2 and err.startswith('error: ') and frag in err and err.count('\n') == 1, err
    assert not out.exists()


def test_make_data_out_is_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path/'data'; f.write_text('x')
    rc, err = console(monkeypatch, capsys, cli.make_data, ['--out', str(f), *MD])
    assert (rc, err) == (2, f'error: --output_dir {f}: exists and is not a folder\n') and f.read_text() == 'x'
    rc, err = console(monkeypatch, capsys, cli.make_data, ['--out', str(f/'sub'), *MD])
    assert rc == 2 and f'{f} is a file, not a folder' in err


def test_argparse_errors_name_the_flag(tmp_path, monkeypatch, capsys):
    "A flag of the wrong type is refused by argparse: usage + the flag, status 2, nothing written"
    rc, err = console(monkeypatch, capsys, cli.make_data, ['--out', str(tmp_path/'d'), '--n_pool', 'many'])
    assert rc == 2 and "argument --n_pool: invalid int value: 'many'" in err and 'Traceback' not in err
    assert not (tmp_path/'d').exists()

# ---------------------------------------------------------------------------------------------------------------
# library level

def test_rl_format_errors_name_trajectory_and_field(tmp_path):
    from lever_plus.data import read_beam_data
    rec = {'candidate_pool_ids': [5, 6, 7], 'pointer_candidates': [{'pointer': [0, 1], 'beam_score': 0.2}, {'pointer': [1, 3], 'beam_score': 0.1}]}
    p = tmp_path/'rl.json'; p.write_text(json.dumps({'_meta': {}, '4': rec}))
    with pytest.raises(BeamDataError, match=r'rl.json: query "4", field `pointer_candidates\[1\].pointer`: position 3 is outside the candidate pool \(K=3'):
        read_beam_data(p)
    rec['pointer_candidates'][1] = {'pointer': [1, 2], 'pointer_global': [6, 9], 'beam_score': 0.1}
    p.write_text(json.dumps({'_meta': {}, '4': rec}))
    with pytest.raises(BeamDataError, match=r'field `pointer_candidates\[1\].pointer_global`: \[6, 9\] disagrees'): read_beam_data(p)
    rec['pointer_candidates'][1] = {'pointer': [1, 2]}
    p.write_text(json.dumps({'_meta': {}, '4': rec}))
    with pytest.raises(BeamDataError, match=r'field `pointer_candidates\[1\].beam_score`: missing'): read_beam_data(p, score_key='beam_score')
    with pytest.raises(BeamDataError, match=r"field `pointer_candidates\[0\].vqa_acc_score`: missing \(score_key='vqa_correct\+vqa_acc_score'"):
        read_beam_data(p)  # not every trajectory has a beam_score: upstream's reward, which needs vqa_acc_score


def test_config_objects_refuse_bad_values():
    with pytest.raises(ConfigError, match=r'sft.epochs must be >= 0, got -2'): SFTConfig(epochs=-2)
    with pytest.raises(ConfigError, match=r'data.shot_num must be in \[1, K=4\], got 5'): DataConfig(K=4, shot_num=5)
    with pytest.raises(ConfigError, match=r'curriculum.rce_epochs must be >= 0, got -1'): CurriculumConfig(rce_epochs=-1)
    from lever_plus.core import config_from_dict
    with pytest.raises(ConfigError, match=r'x.json: field `sft.epochs` expects int, got float 2.5'):
        config_from_dict(TrainConfig, {'sft': {'epochs': 2.5}}, 'x.json')


def test_run_sft_negative_epochs_writes_nothing(world, tmp_path):
    from lever_plus.sft import run_sft
    from lever_plus.core import config_from_dict
    with pytest.raises(ConfigError, match='sft.epochs must be >= 0'):
        run_sft(world/'beams_train.json', world, tmp_path/'sft', 'v2', config_from_dict(TrainConfig, {'sft': {'epochs': -1}}))
    assert not (tmp_path/'sft').exists()


def test_eval_refuses_a_selector_for_other_embeddings(world):
    from lever_plus.core import ModelConfig
    from lever_plus.data import load_datasets
    from lever_plus.evaluate import select_sequences
    from lever_plus.model import PointerSelector
    test = load_datasets(world/'beams_test.json', world, val_frac=0)['train']
    with pytest.raises(EmbeddingError, match='features have d_in=128 but the selector expects d_in=64'):
        select_sequences(PointerSelector(ModelConfig(d_in=64, d_model=8, n_layers=0)), test)


def test_model_rejects_pool_ids_as_positions():
    from lever_plus.core import ModelConfig
    from lever_plus.model import PointerSelector
    m = PointerSelector(ModelConfig(d_in=6, d_model=8, n_layers=1))
    b = dict(query=torch.randn(2, 6), cands=torch.randn(2, 5, 6), beams=torch.tensor([[[0, 7]], [[1, 2]]]))
    with pytest.raises(BeamDataError, match=r'positions outside \[0, K=5\): min 0, max 7'): m.log_prob(b)

# ---------------------------------------------------------------------------------------------------------------
# real console scripts in a subprocess: exit status 2, `error:` first, no traceback

def test_console_scripts_print_one_error_line(ctx):
    bad = ctx.beams('cut.json', text=json.dumps(ctx.train)[:700])
    r = run_script('lever_plus_grpo', ctx.grpo(bad))
    assert r.returncode == 2 and r.stderr.startswith(f'error: {bad}: not valid JSON') and 'Traceback' not in r.stderr, r.stderr
    assert not ctx.out.exists()
    r = run_script('lever_plus_make_data', ['--out', ctx.tmp/'d', *MD, '--K', '4', '--shot_num', '5'])
    assert r.returncode == 2 and r.stderr == 'error: shot_num (5) must be in [1, K=4]: a sequence cannot use more shots than there are candidates\n'
    assert not (ctx.tmp/'d').exists()


def _drop_root_file_powers():
    "In the child before exec: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH so file permissions apply even to root"
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2): libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP: gone from the bounding set, hence after exec


def test_read_only_output_dir(ctx):
    ro = ctx.tmp/'ro'; ro.mkdir(); ro.chmod(0o555)
    try:
        pre = _drop_root_file_powers if os.geteuid() == 0 else None
        probe = subprocess.run([sys.executable, '-c', f'open({str(ro/"probe")!r}, "w")'], capture_output=True, preexec_fn=pre)
        if probe.returncode == 0: pytest.skip('file permissions are not enforced for this user (root with CAP_DAC_OVERRIDE)')
        r = run_script('lever_plus_grpo', ctx.grpo(out=ro), preexec_fn=pre)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f'error: {ro}/.lever_plus.lock: cannot write (Permission denied') and 'Traceback' not in r.stderr, r.stderr
        assert list(ro.iterdir()) == []
    finally: ro.chmod(0o755)


def test_sft_cli_bad_input(world, tmp_path, monkeypatch, capsys):
    rc, err = console(monkeypatch, capsys, cli.sft, ['--beam_data', str(world/'beams_train.json'), '--embeddings', str(world),
                                                     '--output_dir', str(tmp_path/'sft'), '--sft.epochs', '-1'])
    assert (rc, err) == (2, 'error: command line: sft.epochs must be >= 0, got -1\n')
    assert not (tmp_path/'sft').exists()


def test_an_unreadable_embeddings_folder_says_permission_denied(world, tmp_path, monkeypatch):
    "A folder that may not be entered makes `Path.is_file` say False: the message must name the permission, not 'not found'"
    d = tmp_path/'locked'
    shutil.copytree(world, d)
    if os.geteuid() != 0:  # a real locked folder
        d.chmod(0)
        try:
            r = run_script('lever_plus_sft', ['--beam_data', world/'beams_train.json', '--embeddings', d/'embeddings.safetensors',
                                               '--output_dir', tmp_path/'out', '--no_progress'])
        finally: d.chmod(0o755)
        assert r.returncode == 2 and 'cannot read the embedding file (Permission denied)' in r.stderr, r.stderr
    else:  # root may enter any folder: the operating system's answer to a non-root user, given to stat
        real = Path.stat
        def stat(self, *a, **k):
            if self.parent == d: raise PermissionError(13, 'Permission denied', str(self))
            return real(self, *a, **k)
        monkeypatch.setattr(Path, 'stat', stat)
        from lever_plus.data import load_embeddings
        with pytest.raises(EmbeddingError, match=r'embeddings.safetensors: cannot read the embedding file \(Permission denied\)'):
            load_embeddings(d/'embeddings.safetensors')
