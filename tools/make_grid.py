#!/usr/bin/env python
"""Evaluation over many simulated worlds: where the recommended v3 helps, where it does not, and what it costs.

    python tools/make_grid.py                               # train → eval → report (see the wall time below)
    python tools/make_grid.py train --part 0/2 & python tools/make_grid.py train --part 1/2 & wait   # two processes
    python tools/make_grid.py eval report                   # after training; `report` alone reads the cached evaluation
    python tools/make_grid.py --quick --work /tmp/g --out /tmp/g/out   # a tiny smoke run (a minute)

The grid varies one factor at a time around the default world (1,000 labeled training queries, shot 2, K 64):
3,000 labeled queries; shots 1, 3, 4; K 32, 128 — 7 settings × world seeds 1, 2, 3 (seed 0 is the world
the SFT hyper-parameters and the recipe were chosen on, so it stays out). Each world also has 2,000 queries
without beam data (online GRPO's extra queries).

Per world (WORK/SETTING/seedN): the world and its beam data (`make_data`); SFT v2 with the tuned settings (`--sft_config`, default lever_plus/configs/sft-tuned.yaml, chosen on seed 0's
validation queries; early stopping on each world's own validation queries); the named v3 recipe
(`--recipe`, default v3-online) from the tuned SFT v2. Every checkpoint is kept by validation info.

eval: every method on the world's validation and test queries (random, text / image / mix similarity, the SFT
models, v3, the beam oracle), per-query values → WORK/eval/SETTING_seedN.json.

report: per setting, pooled means over seeds with stratified-bootstrap 95 % CIs; the strongest baseline of the
setting, chosen on *validation* (the best of tuned SFT v2 and the similarity methods; the demo's untuned SFT
is compared with the tuned one on the tuning page, nbs/05a_tune.ipynb); the paired gain of
v3 over it on the test queries (info score and VQA accuracy); the same pooled over all worlds and over the
settings with ≤ 3,000 labeled queries; scorer calls per method (beam search for the labeled queries; v3's
online samples on top). → OUT/grid.json, OUT/grid.png.
"""
import argparse, json, shutil, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {'base': {}, 'n_train 3000': dict(n_train=3000), 'shot 1': dict(shot_num=1), 'shot 3': dict(shot_num=3),
            'shot 4': dict(shot_num=4), 'K 32': dict(K=32), 'K 128': dict(K=128)}
SEEDS = (1, 2, 3)
N_UNLABELED, QUICK_WORLD = 2000, dict(n_pool=300, n_val=16, n_test=32, n_unlabeled=32)
BASELINES = {'random': 'random', 'text-sim top-k': 'text_sim', 'img-sim top-k': 'img_sim', 'mix-sim top-k': 'mix_sim'}
RUNS = {'SFT v2 (tuned)': 'sft_tuned', 'v3': 'v3'}
CANDIDATES = ('SFT v2 (tuned)', 'text-sim top-k', 'img-sim top-k', 'mix-sim top-k')  # for the strongest baseline

def say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

def world(setting:str, quick:bool)->dict:
    "`make_data`'s arguments for a world of `setting` (quick: 1/20 of the queries, 1/4 of the candidates)"
    w = dict(n_train=1000, K=64, shot_num=2, n_unlabeled=N_UNLABELED) | SETTINGS[setting]
    return dict(w, **QUICK_WORLD, n_train=w['n_train'] // 20, K=w['K'] // 4) if quick else w

def folder(work:Path, setting:str, seed:int)->Path: return work/setting.replace(' ', '_')/f'seed{seed}'

def _done(d:Path)->dict|None: return json.loads((d/'done.json').read_text()) if (d/'done.json').is_file() else None

def _finish(d:Path, info:dict):
    for sub in ('checkpoints', 'reference'):  # resumable epoch checkpoints: best/ is what is evaluated
        if (d/sub).exists(): shutil.rmtree(d/sub)
    (d/'done.json').write_text(json.dumps(info, indent=1) + '\n')

def configs(seed:int, w:dict, data:Path, a)->dict:
    "The tuned SFT and v3 configs of a world in `data` (the data section fits its K and shot number)"
    from lever_plus.core import TrainConfig, config_from_dict
    from lever_plus.cli import recipe_config, _config_sections, _nested_update
    own = dict(run=dict(seed=seed), data=dict(K=w['K'], shot_num=w['shot_num']))
    quick = dict(sft=dict(epochs=2), curriculum=dict(grpo_epochs=1)) if a.quick else {}
    make = lambda *parts: config_from_dict(TrainConfig, _nested_update(*parts), 'make_grid')
    return dict(sft_tuned=make(_config_sections(Path(a.sft_config)), own, quick),
                v3=make(recipe_config(a.recipe), own, dict(data=dict(unlabeled=str(data/'queries_unlabeled.json'))), quick))

def train_world(work:Path, setting:str, seed:int, a):
    from lever_plus.beams import make_data
    from lever_plus.sft import run_sft
    from lever_plus.train import run_post_train
    from lever_plus.sim import SimScorer
    d, w = folder(work, setting, seed), world(setting, a.quick)
    data = d/'data'
    if not _done(data):
        say(f'{setting} seed {seed}: data → {data}')
        t = time.perf_counter()
        s = make_data(data, seed=seed, progress=False, overwrite=True, **w)
        _finish(data, dict(seconds=time.perf_counter() - t, world=w, summary=s))
    cfgs, scorer = configs(seed, w, data, a), SimScorer.from_dir(data)
    if not _done(d/'sft_tuned'):
        say(f'{setting} seed {seed}: sft_tuned → {d/"sft_tuned"}')
        t = time.perf_counter()
        r = run_sft(data/'beams_train.json', data, d/'sft_tuned', 'v2', cfgs['sft_tuned'], data/'beams_val.json', scorer, overwrite=True)
        _finish(d/'sft_tuned', dict(seconds=time.perf_counter() - t, best_epoch=r['best_epoch']))
    if not _done(d/'v3'):
        say(f'{setting} seed {seed}: v3 ({a.recipe}) → {d/"v3"}')
        t = time.perf_counter()
        r = run_post_train(d/'sft_tuned'/'best', data/'beams_train.json', data, d/'v3', cfgs['v3'], data/'beams_val.json', scorer,
                           progress=False, overwrite=True)
        _finish(d/'v3', dict(seconds=time.perf_counter() - t, best_epoch=r['best_epoch']))

def worlds(a)->list: return [(s, seed) for seed in a.seeds for s in a.settings]  # seed by seed: every setting has a first world early

def stage_train(a):
    i, n = (int(x) for x in a.part.split('/'))
    for k, (s, seed) in enumerate(worlds(a)):
        if k % n == i: train_world(a.work, s, seed, a)

def scorer_calls(d:Path, w:dict)->dict:
    "Scorer calls: the beam search of the labeled training queries, and v3's online samples (metrics.jsonl)"
    from lever_plus.train import read_metrics
    n_train = sum(k != '_meta' for k in json.loads((d/'data'/'beams_train.json').read_text()))
    G, K, S = 5, w['K'], w['shot_num']
    beams = n_train * (K + (S - 1) * G * K)
    rows = [r for r in read_metrics(d/'v3'/'metrics.jsonl') if 'scorer_calls' in r]
    return dict(beam_search=beams, v3_online=max((r['scorer_calls'] for r in rows), default=0))

def stage_eval(a):
    from lever_plus.data import load_datasets
    from lever_plus.sim import SimScorer
    from lever_plus.model import load_selector
    from lever_plus.evaluate import evaluate_methods
    (a.work/'eval').mkdir(parents=True, exist_ok=True)
    for s, seed in worlds(a):
        d = folder(a.work, s, seed)
        f = a.work/'eval'/f'{s.replace(" ", "_")}_seed{seed}.json'
        if f.is_file() and not a.re_eval: continue
        if not all(_done(d/x) for x in ('data', *RUNS.values())): say(f'{s} seed {seed}: not trained, skipped'); continue
        data, scorer = d/'data', SimScorer.from_dir(d/'data')
        methods = dict(BASELINES, **{m: load_selector(d/r/'best') for m, r in RUNS.items()}, **{'beam oracle': 'oracle'})
        out = dict(setting=s, seed=seed, world=world(s, a.quick), calls=scorer_calls(d, world(s, a.quick)),
                   seconds={x: _done(d/x)['seconds'] for x in ('data', *RUNS.values())})
        for split in ('val', 'test'):
            ds = load_datasets(data/f'beams_{split}.json', data, val_frac=0)['train']
            out[split] = {r['method']: r for r in evaluate_methods(methods, ds, scorer, seed, n_boot=200, per_query=True)}
        f.write_text(json.dumps(out) + '\n')
        say(f'{s} seed {seed}: evaluated → {f}')

def stage_report(a):
    from lever_plus.evaluate import summarize_seeds, paired_gain
    ev = {}
    for f in sorted((a.work/'eval').glob('*.json')):
        e = json.loads(f.read_text()); ev.setdefault(e['setting'], []).append(e)
    res, pooled = dict(settings={}, recipe=a.recipe, seeds=list(a.seeds)), []
    for s in [x for x in SETTINGS if x in ev]:
        es = sorted(ev[s], key=lambda e: e['seed'])
        val = {m: float(np.mean([np.mean(e['val'][m]['per_query_info']) for e in es])) for m in CANDIDATES}
        strongest = max(val, key=val.get)
        test = [e['test'] for e in es]
        rows = summarize_seeds(test, [*BASELINES, *RUNS, 'beam oracle'])
        gain = {k: paired_gain(test, 'v3', strongest, key=k) for k in ('info', 'acc')}
        gain_sft = paired_gain(test, 'v3', 'SFT v2 (tuned)')
        for e in es: pooled.append(dict(setting=s, n_train=e['world'].get('n_train', 1000), v3=e['test']['v3'], strongest=e['test'][strongest]))
        res['settings'][s] = dict(world=es[0]['world'], seeds=[e['seed'] for e in es], strongest=strongest, val_info=val,
                                  rows=[{k: v for k, v in r.items() if not k.startswith('per_')} for r in rows],
                                  gain=gain, gain_over_tuned_sft=gain_sft,
                                  calls={k: float(np.mean([e['calls'][k] for e in es])) for k in es[0]['calls']},
                                  seconds={k: float(np.mean([e['seconds'][k] for e in es])) for k in es[0]['seconds']})
    res['train_seconds'] = float(sum(sum(e['seconds'].values()) for es in ev.values() for e in es))  # one process's time, all worlds
    def pool(sel):
        ps = [{'v3': p['v3'], 'strongest': p['strongest']} for p in pooled if sel(p)]
        return {k: paired_gain(ps, 'v3', 'strongest', key=k) for k in ('info', 'acc')} if ps else None
    res['pooled'] = pool(lambda p: True)
    res['pooled_le_3000'] = pool(lambda p: p['n_train'] <= 3000)
    res['targets'] = dict(pooled_gain_ge_15pct=bool(res['pooled'] and res['pooled']['info']['rel'] >= 0.15),
                          pooled_ci_low_gt_5pct=bool(res['pooled'] and res['pooled']['info']['rel_ci'][0] > 0.05),
                          every_setting_ge_10pct=all(v['gain']['info']['rel'] >= 0.10 for k, v in res['settings'].items()
                                                     if v['world'].get('n_train', 1000) <= 3000))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out/'grid.json').write_text(json.dumps(res, indent=1) + '\n')
    figure(res, a.out/'grid.png')
    say(f'report → {a.out/"grid.json"}')
    for s, v in res['settings'].items():
        g = v['gain']['info']
        say(f"  {s:14s} strongest {v['strongest']:24s} v3 {g['mean_a']:.4f} vs {g['mean_b']:.4f}: {g['rel']:+.1%} "
            f"[{g['rel_ci'][0]:+.1%}, {g['rel_ci'][1]:+.1%}]")
    if res['pooled']: g = res['pooled']['info']; say(f"  pooled: {g['rel']:+.1%} [{g['rel_ci'][0]:+.1%}, {g['rel_ci'][1]:+.1%}]")

def figure(res:dict, path:Path):
    from matplotlib.figure import Figure
    names = list(res['settings'])
    fig = Figure(figsize=(8, 3.2)); ax = fig.subplots()
    g = [res['settings'][s]['gain']['info'] for s in names]
    x = np.arange(len(names))
    ax.bar(x, [100 * v['rel'] for v in g], color='#4c72b0')
    ax.errorbar(x, [100 * v['rel'] for v in g], yerr=[[100 * (v['rel'] - v['rel_ci'][0]) for v in g], [100 * (v['rel_ci'][1] - v['rel']) for v in g]],
                fmt='none', ecolor='k', capsize=3)
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(x, names, fontsize=8); ax.set_ylabel('v3 over the strongest baseline (%)', fontsize=8)
    ax.set_title('info score gain on test queries, 95 % CI (3 world seeds per setting)', fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=80)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('stages', nargs='*', default=['train', 'eval', 'report'], help='of: train, eval, report (default: all three)')
    p.add_argument('--work', type=Path, default=ROOT/'runs'/'grid', help='run folders (git ignores runs/)')
    p.add_argument('--out', type=Path, default=ROOT/'nbs'/'results', help='grid.json and grid.png')
    p.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument('--seeds', type=int, nargs='+', default=list(SEEDS))
    p.add_argument('--recipe', default='v3-online', help='the v3 recipe (lever_plus_grpo --recipe)')
    p.add_argument('--sft_config', type=Path, default=ROOT/'lever_plus'/'configs'/'sft-tuned.yaml', help='the tuned SFT settings')
    p.add_argument('--part', default='0/1', help='I/N: train every N-th world starting at the I-th (for N processes)')
    p.add_argument('--re_eval', action='store_true', help='evaluate worlds that already have an evaluation again')
    p.add_argument('--quick', action='store_true', help='tiny worlds, few epochs')
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(argv)
    bad = [s for s in a.stages if s not in ('train', 'eval', 'report')]
    if bad: p.error(f'unknown stage {bad[0]!r}; the stages: train, eval, report')
    import torch; torch.set_num_threads(a.threads)
    t = time.perf_counter()
    for st in a.stages: globals()[f'stage_{st}'](a)
    say(f'done in {time.perf_counter() - t:.0f} s')

if __name__ == '__main__': main()
