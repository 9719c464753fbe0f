"tools/make_grid.py end to end on tiny worlds: train → eval → report, and the report alone from the cached evaluation"
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grid(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT/'tools'/'make_grid.py'), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_grid_quick(tmp_path):
    w, out = tmp_path/'work', tmp_path/'out'
    r = grid('--quick', '--work', w, '--out', out, '--settings', 'base', 'shot 3', '--seeds', 1, 2)
    assert r.returncode == 0, r.stderr
    res = json.loads((out/'grid.json').read_text())
    assert list(res['settings']) == ['base', 'shot 3'] and res['recipe'] == 'v3-online'
    for s, v in res['settings'].items():
        assert v['seeds'] == [1, 2] and v['strongest'] in v['val_info'] and v['val_info'][v['strongest']] == max(v['val_info'].values())
        g = v['gain']['info']
        assert g['a'] == 'v3' and g['b'] == v['strongest'] and g['rel_ci'][0] <= g['rel'] <= g['rel_ci'][1] and g['n_seeds'] == 2
        assert v['calls']['beam_search'] > 0 and v['calls']['v3_online'] > 0 and set(v['seconds']) == {'data', 'sft_tuned', 'v3'}
    assert res['pooled']['info']['n_seeds'] == 4 and set(res['targets']) == {'pooled_gain_ge_15pct', 'pooled_ci_low_gt_5pct', 'every_setting_ge_10pct'}
    assert (out/'grid.png').stat().st_size > 0
    before = (out/'grid.json').read_text()
    r = grid('report', '--quick', '--work', w, '--out', out, '--settings', 'base', 'shot 3', '--seeds', 1, 2)
    assert r.returncode == 0, r.stderr
    assert (out/'grid.json').read_text() == before  # the report is a function of the cached evaluation
    r = grid('plot', '--work', w)
    assert r.returncode == 2 and "unknown stage 'plot'" in r.stderr
