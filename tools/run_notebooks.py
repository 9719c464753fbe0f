#!/usr/bin/env python
"""Execute notebooks and save their outputs, so the docs show every example's result.

    python tools/run_notebooks.py                    # every notebook in nbs/ except the slow or generated ones below
    python tools/run_notebooks.py nbs/08_grpo.ipynb  # just these
    python tools/run_notebooks.py --check            # exit 1 if a notebook's saved outputs hold a temporary path

Each notebook runs in its own folder (as nbdev_test runs it), with matplotlib's plain PNG output (half the size
of 'retina'); its outputs are written back and `nbdev_clean` normalises the file, so CI's sync check (nbdev_clean
changes nothing) keeps passing. Outputs must be small and deterministic: the examples set their seeds, and a
path under a temporary folder in an output is reported (it would change on every run).
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
SKIP = {'results.ipynb': 'tools/make_results.py re-runs it from its JSON',
        '15_explore.ipynb': 'tools/make_results.py keeps its docs figure (the explorer itself is a widget)',
        '90_testing.ipynb': 'test helpers: nothing to show'}
_re_noise = re.compile(r' at 0x[0-9a-f]+|^<function |^<class |^[\w.]+\.[A-Z]\w*$|\x1b\[')  # reprs of objects, progress bars

def keep_output(o)->bool:
    "Whether a cell output belongs in the docs: not warnings (the tests' business), object reprs or progress bars"
    if o.get('name') == 'stderr': return False
    data = o.get('data', {})
    if 'image/png' in data: return True  # a figure (its text/plain is only '<Figure ...>')
    return not _re_noise.search((''.join(o.get('text', '')) + ''.join(data.get('text/plain', ''))).strip())
_re_tmp = re.compile(r'/tmp/[\w.-]+|/var/folders/\S+|tmp[a-z0-9_]{8}')

def run_notebook(path:Path, keep=lambda cell: True):
    "Execute a notebook in its folder, keep the outputs of the code cells `keep` accepts, save it and nbdev_clean it"
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    cwd = os.getcwd(); os.chdir(path.parent)
    try:
        nb = read_nb(path); sh = CaptureShell(mpl_format='png'); sh.run_all(nb, exc_stop=True)
    finally: os.chdir(cwd)
    for c in nb.cells:
        if c.cell_type != 'code': continue
        c.outputs = [o for o in c.outputs if keep_output(o)] if keep(c) else []
    write_nb(nb, path)
    subprocess.run(['nbdev_clean', '--fname', str(path)], cwd=ROOT, check=True)

def temp_paths(path:Path)->list:
    "Temporary-folder paths in the saved text outputs of a notebook (they would differ on every run)"
    import json
    nb, bad = json.loads(path.read_text()), []
    for c in nb['cells']:
        for o in c.get('outputs', []):
            text = ''.join(o.get('text', '')) + ''.join(''.join(v) for k, v in o.get('data', {}).items() if k.startswith('text/'))
            bad += _re_tmp.findall(text)
    return bad

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: all of nbs/ but those in SKIP)')
    p.add_argument('--check', action='store_true', help='only report temporary paths in saved outputs')
    p.add_argument('--filter', action='store_true', help='only drop the outputs `keep_output` refuses from the saved notebooks')
    a = p.parse_args(argv)
    nbs = a.notebooks or [q for q in sorted(NBS.glob('*.ipynb')) if q.name not in SKIP]
    os.environ.pop('MPLBACKEND', None)  # the inline backend, so figures are saved with the cells that draw them
    failed = False
    for nb in nbs:
        if a.filter:
            from execnb.nbio import read_nb, write_nb
            nbo = read_nb(nb)
            for c in nbo.cells:
                if c.cell_type == 'code': c.outputs = [o for o in c.outputs if keep_output(o)]
            write_nb(nbo, nb); subprocess.run(['nbdev_clean', '--fname', str(nb)], cwd=ROOT, check=True)
        elif not a.check:
            t = time.time(); run_notebook(nb.resolve()); print(f'{nb.name}: ran in {time.time() - t:.0f} s', flush=True)
        bad = temp_paths(nb)
        if bad: failed = True; print(f'{nb.name}: temporary paths in outputs: {sorted(set(bad))[:5]}')
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
