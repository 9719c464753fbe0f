#!/usr/bin/env python
"""The Lever-Plus recipe's model lineage on the default simulated world → nbs/results/lineage.json

    nohup python tools/lineage_results.py > runs/lineage/lineage.log 2>&1 &     # train → eval → report
    python tools/lineage_results.py eval report                                 # re-evaluate (e.g. once more v3 runs exist)
    python tools/lineage_results.py --quick --work /tmp/lq --out /tmp/lq/lineage.json   # a tiny smoke run

Rows, per seed (3 seeds by default), on that seed's 200 held-out test queries:
  v0 (GPT-2 over pool ids, SFT), SFT v1, SFT v2, v2_lora (adapters on that seed's SFT v2), v3 offline (RCE+GRPO),
  v3 online (GRPO, 8 samples per query), v0 + RCE+GRPO (the post-training loop on v0), the similarity
  baselines, random, and the beam oracle; parameter counts and training times beside the scores.

Reuse: the world + beam data, SFT v1 / v2 and the v3 runs come from the results work folder of
tools/make_results.py (--from, default runs/results) when it holds finished ones (done.json); otherwise the data
and SFT v1 / v2 are made here (same seeds, same config: the demo's 10 SFT epochs) and the v3 rows are left out
until `eval report` is rerun after make_results has trained them. v0, v2_lora and v0 + RCE+GRPO are trained here,
under --work (default runs/lineage, git-ignored).
"""
import argparse, dataclasses, json, platform, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_WORLD = dict(n_pool=400, n_train=64, n_val=16, n_test=48, K=16)
V0_MODEL = dict(d_model=128, n_layers=2, n_heads=2)  # GPT-2 with n_embd 128, 2 layers, 2 heads: 0.93 M params (v2: 1.09 M)
LORA = dict(rank=8, alpha=16.0, epochs=5, lr=2e-3)  # adapters on each seed's SFT v2 best/
SFT_EPOCHS, GRPO_EPOCHS = 10, 3  # the demo's budget (lever_plus.cli.DEMO_*), as in tools/make_results.py

# row name → (run folder name, where it lives: 'from' = make_results' work folder, 'work' = ours)
RUNS = {'SFT v0 (GPT-2)': ('sft_v0', 'work'), 'SFT v1': ('sft_v1', 'from'), 'SFT v2': ('sft_v2', 'from'),
        'SFT v2_lora': ('sft_v2_lora', 'work'), 'v3 (offline: RCE+GRPO)': ('v3', 'from'),
        'v3 (online GRPO, 8 samples)': ('online', 'from'), 'v0 + RCE+GRPO (offline)': ('v0_grpo', 'work')}
BASELINES = {'random': 'random', 'text-sim top-k': 'text_sim', 'img-sim top-k': 'img_sim', 'mix-sim top-k': 'mix_sim'}
ON_TOP_OF = {'SFT v2_lora': 'SFT v2', 'v3 (offline: RCE+GRPO)': 'SFT v2', 'v3 (online GRPO, 8 samples)': 'SFT v2',
             'v0 + RCE+GRPO (offline)': 'SFT v0 (GPT-2)'}

def say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)
def _done(d:Path): return json.loads((d/'done.json').read_text()) if (d/'done.json').is_file() else None
def _finish(d:Path, info:dict):
    for sub in ('checkpoints', 'reference'):
        if (d/sub).exists(): shutil.rmtree(d/sub)
    (d/'done.json').write_text(json.dumps(info, indent=1) + '\n')

def config(seed:int, quick:bool, **over):
    from lever_plus.core import TrainConfig, config_from_dict
    d = dict(run=dict(seed=seed), sft=dict(epochs=2 if quick else SFT_EPOCHS), curriculum=dict(rce_epochs=1, grpo_epochs=1 if quick else GRPO_EPOCHS))
    for sec, v in over.items(): d.setdefault(sec, {}).update(v)
    return config_from_dict(TrainConfig, d, 'lineage_results')

def data_dir(a, seed:int)->Path:
    "The world of `seed`: make_results' when finished (and not --quick), else ours"
    theirs = a.src/f'seed{seed}'/'data'
    if not a.quick and _done(theirs): return theirs
    d = a.work/f'seed{seed}'/'data'
    if not _done(d):
        from lever_plus.beams import make_data
        say(f'seed {seed}: data → {d}')
        t = time.perf_counter()
        make_data(d, seed=seed, progress=False, **(QUICK_WORLD if a.quick else {}))
        _finish(d, dict(seconds=time.perf_counter() - t))
    return d

def run_dir(a, seed:int, label:str)->Path:
    "Folder of a row's run: ours, or make_results' when it finished it there (SFT v1 / v2 fall back to ours)"
    name, where = RUNS[label]
    theirs = a.src/f'seed{seed}'/name
    if where == 'from' and not a.quick and _done(theirs): return theirs
    return a.work/f'seed{seed}'/name

def ensure_sft(a, seed:int, label:str, version:str, cfg):
    from lever_plus.sft import run_sft
    from lever_plus.sim import SimScorer
    out, data = run_dir(a, seed, label), data_dir(a, seed)
    if _done(out): return out
    say(f'seed {seed}: {label} → {out}')
    if out.exists(): shutil.rmtree(out)
    t = time.perf_counter()
    res = run_sft(data/'beams_train.json', data, out, version, cfg, data/'beams_val.json', SimScorer.from_dir(data))
    _finish(out, dict(seconds=time.perf_counter() - t, best_epoch=res['best_epoch'], n_params=res['n_params'],
                      n_trainable=res['n_trainable'], time_s=res['time_s']))
    return out

def ensure_v0_grpo(a, seed:int):
    "RCE + GRPO (offline, the demo's schedule) on that seed's SFT v0: `post_train` on a `GPTSelector`"
    from lever_plus.data import load_datasets
    from lever_plus.model import load_selector
    from lever_plus.sim import SimScorer
    from lever_plus.train import post_train
    out, data = run_dir(a, seed, 'v0 + RCE+GRPO (offline)'), data_dir(a, seed)
    if _done(out): return out
    say(f'seed {seed}: v0 + RCE+GRPO → {out}')
    if out.exists(): shutil.rmtree(out)  # start over: post_train would reload its reference with PointerSelector
    policy = load_selector(run_dir(a, seed, 'SFT v0 (GPT-2)')/'best')
    cfg = config(seed, a.quick)
    d = load_datasets(data/'beams_train.json', data, None, cfg.data.n_beams, data/'beams_val.json')
    cfg = dataclasses.replace(cfg, model=policy.cfg, data=dataclasses.replace(cfg.data, K=d['K'], shot_num=d['shot_num']),
                              run=dataclasses.replace(cfg.run, output_dir=str(out)))
    t = time.perf_counter()
    res = post_train(cfg, policy, d['train'], d['val'], out, SimScorer.from_dir(data), progress=False)
    _finish(out, dict(seconds=time.perf_counter() - t, best_epoch=res['best_epoch'], skipped_steps=res['skipped_steps']))
    return out

def stage_train(a):
    for seed in a.seeds:
        data_dir(a, seed)
        ensure_sft(a, seed, 'SFT v0 (GPT-2)', 'v0', config(seed, a.quick, model=V0_MODEL))
        ensure_sft(a, seed, 'SFT v1', 'v1', config(seed, a.quick))
        v2 = ensure_sft(a, seed, 'SFT v2', 'v2', config(seed, a.quick))
        ensure_sft(a, seed, 'SFT v2_lora', 'v2_lora', config(seed, a.quick, model=dict(lora_rank=LORA['rank'], lora_alpha=LORA['alpha'], base_ckpt=str(v2/'best')),
                                                               sft=dict(epochs=2 if a.quick else LORA['epochs'], lr=LORA['lr'])))
    for seed in a.seeds: ensure_v0_grpo(a, seed)  # last: the optional row

def eval_one(a, seed:int)->dict:
    from lever_plus.data import load_datasets
    from lever_plus.evaluate import evaluate_methods
    from lever_plus.model import load_selector
    from lever_plus.sim import SimScorer
    data = data_dir(a, seed)
    methods, info = dict(BASELINES), {}
    for label in RUNS:
        d = run_dir(a, seed, label)
        if not (_done(d) and (d/'best'/'model.safetensors').is_file()): continue
        m = methods[label] = load_selector(d/'best')
        info[label] = dict(dir=str(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d), seconds=round(_done(d)['seconds'], 1),
                           n_params=m.n_params, n_trainable=sum(p.numel() for p in m.parameters() if p.requires_grad),
                           model=dataclasses.asdict(m.cfg))
    methods['beam oracle'] = 'oracle'
    test = load_datasets(data/'beams_test.json', data, val_frac=0)['train']
    say(f'eval seed {seed}: {len(methods)} methods on {len(test)} test queries')
    rows = evaluate_methods(methods, test, SimScorer.from_dir(data), seed, n_boot=a.n_boot, per_query=True)
    return dict(seed=seed, n_query=len(test), data=str(data), runs=info, rows=rows)

def stage_eval(a):
    (a.work/'eval').mkdir(parents=True, exist_ok=True)
    for seed in a.seeds: (a.work/'eval'/f'seed{seed}.json').write_text(json.dumps(eval_one(a, seed)) + '\n')

def stage_report(a):
    import numpy as np
    import torch
    from lever_plus.evaluate import summarize_seeds, paired_gain, results_table
    per = [json.loads((a.work/'eval'/f'seed{s}.json').read_text()) for s in a.seeds if (a.work/'eval'/f'seed{s}.json').is_file()]
    per_seed = [{r['method']: r for r in p['rows']} for p in per]
    order = list(BASELINES) + list(RUNS) + ['beam oracle']
    rows = summarize_seeds(per_seed, [m for m in order if any(m in p for p in per_seed)], n_boot=a.n_boot)
    r3 = lambda x: None if x is None else round(float(x), 5)
    for r in rows:
        for k in ('info', 'acc', 'frac_oracle', 'info_seed_sd', 'acc_seed_sd'): r[k] = r3(r.get(k))
        for k in ('info_ci', 'acc_ci', 'frac_oracle_ci'): r[k] = None if r.get(k) is None else [r3(x) for x in r[k]]
        for k in ('per_seed_info', 'per_seed_acc'): r[k] = [r3(x) for x in r[k]]
        runs = [p['runs'][r['method']] for p in per if r['method'] in p['runs']]
        if runs:
            r.update(n_params=runs[0]['n_params'], n_trainable=runs[0]['n_trainable'],
                     train_time_s=round(float(np.mean([x['seconds'] for x in runs])), 1), train_time_s_per_seed=[x['seconds'] for x in runs],
                     on_top_of=ON_TOP_OF.get(r['method']), model=runs[0]['model'])
    gains = [paired_gain(per_seed, x, y, n_boot=a.n_boot) for x, y in
             (('SFT v0 (GPT-2)', 'SFT v2'), ('SFT v1', 'SFT v2'), ('SFT v2_lora', 'SFT v2'), ('v0 + RCE+GRPO (offline)', 'SFT v0 (GPT-2)'),
              ('v3 (offline: RCE+GRPO)', 'SFT v2'), ('v3 (online GRPO, 8 samples)', 'SFT v2'), ('SFT v0 (GPT-2)', 'mix-sim top-k'))
             if any(x in p and y in p for p in per_seed)]
    for g in gains:
        for k, v in list(g.items()):
            if isinstance(v, float): g[k] = r3(v)
            elif isinstance(v, (list, tuple)) and v and isinstance(v[0], float): g[k] = [r3(x) for x in v]
    table = results_table(rows)
    extra = ['| method | parameters (trainable) | training time, s (mean over seeds) | on top of |', '|---|---|---|---|']
    for r in rows:
        if 'n_params' in r:
            pt = f"{r['n_params']:,}" + (f" ({r['n_trainable']:,})" if r['n_trainable'] != r['n_params'] else '')
            extra.append(f"| {r['method']} | {pt} | {r['train_time_s']:.0f} | {r['on_top_of'] or '—'} |")
    out = dict(generated=time.strftime('%Y-%m-%d %H:%M'), command='python tools/lineage_results.py ' + ' '.join(sys.argv[1:]),
               machine=f'{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU shared with other jobs (times are indicative)',
               seeds=[p['seed'] for p in per], n_test_per_seed=[p['n_query'] for p in per], quick=a.quick,
               setup=dict(v0_model=V0_MODEL, lora=LORA, sft_epochs=SFT_EPOCHS, grpo_epochs=GRPO_EPOCHS,
                          note='v3 rows and SFT v1/v2 come from tools/make_results.py runs when finished there; time of a row = its own stage only (see on_top_of)'),
               rows=rows, table=table, sizes_table='\n'.join(extra), gains=gains,
               per_seed={str(p['seed']): {r['method']: dict(info=r3(r['info']), acc=r3(r['acc'])) for r in p['rows']} for p in per})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + '\n')
    say(f'wrote {a.out}\n{table}\n\n' + '\n'.join(extra))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('stages', nargs='*', default=['train', 'eval', 'report'], help='train, eval, report (default: all three)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--work', type=Path, default=ROOT/'runs'/'lineage')
    p.add_argument('--from', dest='src', type=Path, default=ROOT/'runs'/'results', help="tools/make_results.py's work folder")
    p.add_argument('--out', type=Path, default=ROOT/'nbs'/'results'/'lineage.json')
    p.add_argument('--n_boot', type=int, default=1000)
    p.add_argument('--quick', action='store_true', help='a tiny world and 2 epochs (smoke test; nothing reused)')
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    for s in a.stages:
        if s not in ('train', 'eval', 'report'): p.error(f'unknown stage {s!r}')
    t = time.perf_counter()
    for s in ('train', 'eval', 'report'):
        if s in a.stages: globals()[f'stage_{s}'](a)
    say(f'done in {time.perf_counter() - t:.0f} s')

if __name__ == '__main__': main()
