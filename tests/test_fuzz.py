"""Fuzzing the front door: seeded random corruptions (byte flips, truncation, type swaps, value swaps) of a valid beam
JSON, RL JSON, config file and embeddings file, each given to `lever_plus_sft` in this process. Every case must
either succeed (a complete run folder) or exit 2 with one `error:` line on stderr and no output folder left
behind — never a traceback, a hang or a half-written folder."""
import contextlib, io, json, os, random, shutil, signal, struct
from pathlib import Path
import pytest
from lever_plus.beams import make_data
from lever_plus.cli import _run_main, sft_main

N_CASES = int(os.environ.get('LEVER_PLUS_FUZZ_CASES', 200))  # per kind; seeded, so a failure names a reproducible case
KINDS = ('beams', 'rl', 'config', 'embeddings')
CONFIG = """model:
  d_model: 8
  n_layers: 1
  dropout: 0.1
sft:
  epochs: 1
  lr: 0.01
data:
  batch_size: 4
  val_frac: 0.25
run:
  seed: 0
  log_every: 2
"""


@pytest.fixture(scope='module')
def small_world(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp('fuzz_world')
    make_data(d, seed=0, progress=False, rl=True, K=8, n_pool=60, n_train=12, n_val=4, n_test=4, shot_num=2, beam_width=3)
    (d/'config.yaml').write_text(CONFIG)
    return d


# ---- corruptions: each takes the file's bytes and a seeded Random, returns (name, new bytes)

def _leaves(x, path=()):
    "Paths to every leaf (and every list / dict) of a parsed JSON / YAML value"
    yield path
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items: yield from _leaves(v, path + (k,))

def _get(x, path):
    for k in path: x = x[k]
    return x

def _set(x, path, v):
    if not path: return v
    _get(x, path[:-1])[path[-1]] = v
    return x

OTHER_TYPES = ['text', '', None, True, False, [], [1, 2], {}, {'a': 1}, -1, 0, 2, 0.5, -0.5, 1e300, float('nan'), float('inf'), '1e-2', '٣']

def _flip(b:bytes, r:random.Random):
    b = bytearray(b)
    for _ in range(r.choice([1, 1, 2, 8])): b[r.randrange(len(b))] = r.randrange(256)
    return 'byte flip', bytes(b)

def _truncate(b:bytes, r:random.Random): return 'truncation', b[:r.randrange(len(b))]

def _load(b:bytes, yaml:bool):
    if yaml:
        import yaml as y
        return y.safe_load(b.decode())
    return json.loads(b)

def _dump(x, yaml:bool) -> bytes:
    if yaml:
        import yaml as y
        return y.safe_dump(x, allow_unicode=True).encode()
    return json.dumps(x).encode()  # NaN / Infinity tokens are allowed: a reader must refuse or handle them

def _type_swap(b:bytes, r:random.Random, yaml=False):
    x = _load(b, yaml)
    path = r.choice(list(_leaves(x))[1:])
    return 'type swap', _dump(_set(x, path, r.choice(OTHER_TYPES)), yaml)

def _value_swap(b:bytes, r:random.Random, yaml=False):
    "Two leaves trade values (numbers with ids, scores with lists, …), or a dict loses / duplicates a key"
    x = _load(b, yaml)
    paths = list(_leaves(x))[1:]
    p, q = r.choice(paths), r.choice(paths)
    if r.random() < 0.2:  # drop a key, or copy one record under another's key
        d = _get(x, p[:-1]) if p and isinstance(_get(x, p[:-1]), dict) else x
        if isinstance(d, dict) and d:
            k = r.choice(list(d))
            if r.random() < 0.5: del d[k]
            else: d[r.choice(list(d))] = d[k]
        return 'key drop / copy', _dump(x, yaml)
    if p[:len(q)] == q or q[:len(p)] == p: return 'value swap (no-op)', _dump(x, yaml)  # one inside the other
    vp, vq = _get(x, p), _get(x, q)
    _set(x, p, vq); _set(x, q, vp)
    return 'value swap', _dump(x, yaml)

def _st_split(b:bytes):
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def _st_join(h:dict, data:bytes) -> bytes:
    hb = json.dumps(h).encode()
    return struct.pack('<Q', len(hb)) + hb + data

def _st_type_swap(b:bytes, r:random.Random):
    "A tensor's dtype, shape or offsets changed in the safetensors header"
    h, data = _st_split(b)
    k = r.choice([k for k in h if k != '__metadata__'])
    what = r.choice(['dtype', 'shape', 'offsets', 'name'])
    if what == 'dtype': h[k]['dtype'] = r.choice(['F16', 'BF16', 'F64', 'I32', 'I64', 'U8', 'BOOL', 'C64', 'F8_E4M3'])
    elif what == 'shape': h[k]['shape'] = r.choice([[], [h[k]['shape'][0]], h[k]['shape'][::-1], [0, h[k]['shape'][1]], [h[k]['shape'][0], 1, h[k]['shape'][1]]])
    elif what == 'offsets': h[k]['data_offsets'] = [o + r.choice([-4, 4, 1]) for o in h[k]['data_offsets']]
    else: h[r.choice(['pool', 'query_img ', 'pool_img2'])] = h.pop(k)
    return f'header {what}', _st_join(h, data)

def _st_value_swap(b:bytes, r:random.Random):
    "Values in the data section replaced by NaN / inf / huge / zero, or two tensors' headers swapped"
    h, data = _st_split(b)
    keys = [k for k in h if k != '__metadata__']
    if r.random() < 0.3:
        a, c = r.sample(keys, 2)
        h[a], h[c] = h[c], h[a]
        return 'tensors swapped', _st_join(h, data)
    data = bytearray(data)
    k = r.choice(keys)
    lo, hi = h[k]['data_offsets']
    v = r.choice([float('nan'), float('inf'), -float('inf'), 3e38, 0.0])
    rows = r.choice(['one', 'row', 'all'])
    d = h[k]['shape'][1]
    if rows == 'one': idx = [r.randrange(lo, hi, 4)]
    elif rows == 'row': s = lo + 4 * d * r.randrange(h[k]['shape'][0]); idx = range(s, s + 4 * d, 4)
    else: idx = range(lo, hi, 4)
    for i in idx: data[i:i + 4] = struct.pack('<f', v)
    return f'values {v} ({rows})', _st_join(h, bytes(data))

def corrupt(kind:str, b:bytes, r:random.Random):
    fam = r.choice(['flip', 'truncate', 'type', 'value'])
    if fam == 'flip': return _flip(b, r)
    if fam == 'truncate': return _truncate(b, r)
    if kind == 'embeddings': return (_st_type_swap if fam == 'type' else _st_value_swap)(b, r)
    return (_type_swap if fam == 'type' else _value_swap)(b, r, yaml=kind == 'config')


class _Timeout(Exception): pass

def _alarm(signum, frame): raise _Timeout()

def run_case(world:Path, kind:str, seed:int, tmp:Path) -> dict:
    "Corrupt one file of `world` with seed `seed`, run lever_plus_sft on it in this process, report what happened"
    r = random.Random(f'{kind}-{seed}')
    src = {'beams': world/'beams_train.json', 'rl': world/'beams_train_rl.json', 'config': world/'config.yaml',
           'embeddings': world/'embeddings.safetensors'}[kind]
    case = tmp/f'{kind}_{seed}'
    case.mkdir()
    emb = world/'embeddings.safetensors'
    data, cfg = src if kind in ('beams', 'rl') else world/'beams_train.json', world/'config.yaml'
    orig = src.read_bytes()
    name, b = corrupt(kind, orig, r)
    bad = case/src.name
    bad.write_bytes(b)
    if kind in ('beams', 'rl'): data = bad
    elif kind == 'config': cfg = bad
    else:
        emb = bad
        shutil.copy(world/'meta.json', case/'meta.json')
    out = case/'run'
    argv = ['--config', cfg, '--beam_data', data, '--embeddings', emb, '--output_dir', out, '--no_progress', '--scorer', 'none']
    err, rc, exc = io.StringIO(), 0, None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err): _run_main(sft_main, [str(a) for a in argv])
    except SystemExit as e: rc = e.code
    except BaseException as e: exc = e  # a traceback a user would see
    finally:
        signal.alarm(0); signal.signal(signal.SIGALRM, old)
    assert src.read_bytes() == orig  # the valid original is untouched
    return dict(kind=kind, seed=seed, corruption=name, rc=rc, exc=exc, stderr=err.getvalue(), out=out)


def _problem(c:dict) -> str|None:
    "What is wrong with the outcome of a case (None: a clean success or a clean refusal)"
    lines = [l for l in c['stderr'].splitlines() if l.strip()]
    if c['exc'] is not None: return f'raised {type(c["exc"]).__name__}: {str(c["exc"])[:300]}'
    if 'Traceback' in c['stderr']: return 'printed a traceback'
    errors = [l for l in lines if not l.startswith('warning: ')]
    if c['rc'] == 0:
        if errors: return f'succeeded but printed {errors[:2]}'
        if not (c['out']/'best'/'model.safetensors').is_file(): return 'succeeded without best/model.safetensors'
        return None
    if c['rc'] != 2: return f'exit {c["rc"]}'
    if len(errors) != 1 or not errors[0].startswith('error: '): return f'stderr is not one error line: {errors[:3]}'
    if c['out'].exists() and any(p.name != '.lever_plus.lock' for p in c['out'].rglob('*')):
        return f'left a partial output folder: {sorted(p.name for p in c["out"].rglob("*"))[:8]}'
    return None


@pytest.mark.parametrize('kind', KINDS)
def test_corrupted_inputs_are_refused_in_one_line_or_run(small_world, tmp_path, kind):
    cases = [run_case(small_world, kind, s, tmp_path) for s in range(N_CASES)]
    bad = [(c['seed'], c['corruption'], p) for c in cases if (p := _problem(c))]
    refused = sum(c['rc'] == 2 for c in cases)
    assert 0 < refused < N_CASES or kind == 'config', (refused, N_CASES)  # the corruptions reach both outcomes
    assert not bad, f'{len(bad)} of {N_CASES} {kind} cases: ' + '\n'.join(map(str, bad[:15]))
