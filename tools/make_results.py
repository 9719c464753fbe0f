#!/usr/bin/env python
"""Regenerate the cached results the docs' results page shows (nbs/results/results.json + PNGs + explore.json).

    python tools/make_results.py                        # everything: train → eval → report → notebooks
    python tools/make_results.py train                  # only the training runs (resumable: finished runs are skipped)
    python tools/make_results.py eval report notebooks  # re-evaluate the checkpoints, rewrite JSON, figures, page outputs
    python tools/make_results.py report notebooks       # from the cached per-query results only (seconds)
    python tools/make_results.py train eval report --quick --work /tmp/r --out /tmp/r/out   # tiny smoke run (minutes)

The full run trains 2 SFT + 9 post-training runs per seed (3 seeds) and a shot sweep: about 1 h of wall time on
a busy 2-core machine with the training split over two processes (they touch disjoint run folders):

    python tools/make_results.py train --seeds 0 1 --parts main variants &
    python tools/make_results.py train --seeds 2 --parts main variants &
    wait; python tools/make_results.py train --seeds 0 --parts sweep
    python tools/make_results.py train --parts arch      # upstream Lever-Plus's v2 network: SFT + the best variant
    python tools/make_results.py eval report notebooks

Stages (each reads what the previous one wrote under --work, default runs/results, which git ignores):

train     per seed: the simulated world + beam data at default size (`make_data`), SFT v1 and SFT v2 (the demo's
          10 epochs), then post-training runs from the seed's SFT v2 checkpoint, all sharing that data and SFT
          model: v3-offline (RCE 1 + GRPO 3 epochs, the demo's --offline schedule), its RCE warm-up alone, the ablations (no RCE warm-up,
          no curriculum, fixed β, π_old refreshed each epoch, no-std advantages) and the online / hybrid
          GRPO (8 sampled sequences per query and step, scored by the simulated VLM). Then a shot sweep at the
          first seed (beam data, SFT v2 and v3 at shots 1, 3, 4). Model selection uses validation queries only.
eval      every method on the seed's held-out test queries (`lever_plus.evaluate.evaluate_methods`), and how
          often each pick is one of the query's beams; per-query values go to WORK/eval/*.json (not in git).
report    pooled means over seeds with stratified-bootstrap 95 % CIs, paired gains, training summaries
          (validation curves, advantage histograms, β, scorer calls, wall times) → OUT/results.json (small),
          the figures OUT/*.png and OUT/explore.json (cached explorer views of 12 random test queries).
notebooks re-runs nbs/results.ipynb and the docs figure of nbs/15_explore.ipynb so their saved outputs match.

torch runs with 1 thread by default (--threads): on a 2-core machine shared with other jobs, 2 threads per
process were 5-7× slower here (OpenMP threads spinning against each other).
"""
import argparse, dataclasses, json, platform, shutil, sys, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# post-training variants, as overrides of the demo's config; all start from the seed's SFT v2 checkpoint
VARIANTS = {
    'v3': {},                                                     # RCE 1 epoch + GRPO 3 epochs (the demo's v3)
    'v3_rce': dict(curriculum=dict(rce_epochs=1, grpo_epochs=0)), # RCE warm-up only
    'no_rce': dict(curriculum=dict(rce_epochs=0)),                # ablation: GRPO straight from SFT
    'no_curriculum': dict(curriculum=dict(top_k_frac=0.0)),       # ablation: all beams from the first GRPO epoch
    'fixed_beta': dict(control=dict(mode='fixed')),               # ablation: β stays at grpo.beta
    'refresh_old': dict(grpo=dict(old_policy='epoch')),           # ablation: π_old refreshed every epoch
    'no_std': dict(grpo=dict(adv_mode='no_std')),                 # ablation: advantages not divided by the std
    'online': dict(grpo=dict(online_samples=8)),                  # online GRPO, 8 samples per query
    'hybrid': dict(grpo=dict(online_samples=8, hybrid=True)),     # 8 samples + the 5 offline beams
    # online GRPO straight from SFT on the 1,000 labeled + N_UNLABELED queries without beams; β small and fixed,
    # best/ by validation info alone (its KL to SFT grows large: the SFT model memorised its training queries)
    'online_unl': dict(grpo=dict(online_samples=8, lr_ratio=0.3, beta=0.01), control=dict(mode='fixed'), run=dict(kl_ceiling=1e9),
                       curriculum=dict(rce_epochs=0, grpo_epochs=6), data=dict(unlabeled='<data>/queries_unlabeled.json')),
    # the same for 10 epochs (a validation sweep over 10 epochs / RCE warm-up first / threshold β put it first)
    'online_unl_10ep': dict(grpo=dict(online_samples=8, lr_ratio=0.3, beta=0.01), control=dict(mode='fixed'), run=dict(kl_ceiling=1e9),
                            curriculum=dict(rce_epochs=0, grpo_epochs=10), data=dict(unlabeled='<data>/queries_unlabeled.json')),
    # the same for one epoch: about the extra scorer calls of 'online' (3 epochs × 1,000 queries) and of the RL-format data
    'online_unl_1ep': dict(grpo=dict(online_samples=8, lr_ratio=0.3, beta=0.01), control=dict(mode='fixed'), run=dict(kl_ceiling=1e9),
                           curriculum=dict(rce_epochs=0, grpo_epochs=1), data=dict(unlabeled='<data>/queries_unlabeled.json')),
    # the demo's v3 schedule (RCE 1 + GRPO 3) on RL-format groups (beams + retrievals + samples + random picks)
    'rl_offline': dict(_train='beams_train_rl.json', data=dict(n_beams=20)),
    # the architecture comparison: online_unl from an SFT model with upstream Lever-Plus's v2 network (same sizes)
    'online_unl_upstream': dict(_sft='sft_v2_upstream', grpo=dict(online_samples=8, lr_ratio=0.3, beta=0.01), control=dict(mode='fixed'),
                                run=dict(kl_ceiling=1e9), curriculum=dict(rce_epochs=0, grpo_epochs=6), data=dict(unlabeled='<data>/queries_unlabeled.json')),
}
MAIN = ('v3', 'v3_rce')                                   # trained first (the main table)
ABLATIONS = ('no_rce', 'no_curriculum', 'fixed_beta', 'refresh_old', 'no_std')
ONLINE = ('online', 'hybrid', 'rl_offline', 'online_unl_1ep', 'online_unl', 'online_unl_10ep')
ARCH = ('online_unl_upstream',)                           # from SFT v2 with upstream's architecture ('v2_upstream')
N_PLUS, N_PLUS_QUICK = 350, 16  # unlabeled queries beam-searched for the budget-matched SFT baseline (≈ online_unl's calls / 384)
N_UNLABELED, N_UNLABELED_QUICK = 2000, 64  # queries without beams added to each seed's world (drawn last: labeled files unchanged)
SWEEP_SHOTS = (1, 3, 4)                                   # besides 2, at the first seed only (SFT v2 vs v3)

def say(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)

def base_config(seed:int, quick:bool)->dict:
    from lever_plus.cli import DEMO_SFT_EPOCHS, DEMO_GRPO_EPOCHS
    return dict(run=dict(seed=seed), sft=dict(epochs=2 if quick else DEMO_SFT_EPOCHS),
                curriculum=dict(rce_epochs=1, grpo_epochs=1 if quick else DEMO_GRPO_EPOCHS))

def make_config(seed:int, quick:bool, over:dict|None=None):
    from lever_plus.core import TrainConfig, config_from_dict
    d = base_config(seed, quick)
    for sec, v in (over or {}).items(): d.setdefault(sec, {}).update(v)
    return config_from_dict(TrainConfig, d, 'make_results')

QUICK_WORLD = dict(n_pool=400, n_train=64, n_val=16, n_test=48, K=16)

def data_dir(work:Path, seed:int, shot:int)->Path: return work/f'seed{seed}'/('data' if shot == 2 else f'data_s{shot}')
def run_dir(work:Path, seed:int, name:str, shot:int=2)->Path: return work/f'seed{seed}'/(name if shot == 2 else f'{name}_s{shot}')

def _done(d:Path)->dict|None:
    f = d/'done.json'
    return json.loads(f.read_text()) if f.is_file() else None

def _finish(d:Path, info:dict):
    "Mark a run finished; drop its resumable epoch checkpoints and the reference copy (best/ is kept)"
    for sub in ('checkpoints', 'reference'):
        if (d/sub).exists(): shutil.rmtree(d/sub)
    (d/'done.json').write_text(json.dumps(info, indent=1) + '\n')

def ensure_data(work, seed, shot, quick):
    from lever_plus.beams import make_data
    d = data_dir(work, seed, shot)
    if _done(d): return d
    say(f'seed {seed} shot {shot}: data → {d}')
    t = time.perf_counter()
    s = make_data(d, seed=seed, shot_num=shot, progress=False, overwrite=True, **(QUICK_WORLD if quick else {}))  # over an unfinished attempt
    _finish(d, dict(seconds=time.perf_counter() - t, summary=s))
    return d

def ensure_extras(work, seed, quick):
    "Add unlabeled queries and RL-format files to the seed's shot-2 data in place; the beam files must come out byte-identical"
    from lever_plus.beams import make_data
    d = data_dir(work, seed, 2)
    if (d/'queries_unlabeled.json').is_file() and (d/'beams_train_rl.json').is_file(): return d
    say(f'seed {seed}: + unlabeled queries, RL-format files → {d}')
    before = {f: (d/f).read_bytes() for f in ('beams_train.json', 'beams_val.json', 'beams_test.json')}
    make_data(d, seed=seed, shot_num=2, progress=False, rl=True, n_unlabeled=N_UNLABELED_QUICK if quick else N_UNLABELED, overwrite=True,
              **(QUICK_WORLD if quick else {}))  # the same world again, with the extra files
    for f, b in before.items():
        if (d/f).read_bytes() != b: raise RuntimeError(f'{d/f}: changed when unlabeled queries were added')
    return d

def ensure_plus(work, seed, quick)->Path:
    "beams_train_plus.json: the labeled training queries + beam search on the first N_PLUS unlabeled ones (their stored pools)"
    import torch
    from lever_plus.beams import beam_search, beams_to_records, write_beams
    from lever_plus.data import read_query_pools
    from lever_plus.sim import SimScorer
    d = data_dir(work, seed, 2); f = d/'beams_train_plus.json'
    if f.is_file(): return f
    say(f'seed {seed}: beam search on {N_PLUS_QUICK if quick else N_PLUS} unlabeled queries → {f}')
    pools = read_query_pools(d/'queries_unlabeled.json')
    qs = sorted(pools)[:N_PLUS_QUICK if quick else N_PLUS]
    sc, q, cands = SimScorer.from_dir(d), torch.tensor(qs), torch.tensor([pools[i] for i in qs])
    beams, scores = beam_search(sc, q, cands, 2, 5)
    acc = sc.vqa_acc(q.repeat_interleave(beams.shape[1]), beams.view(-1, 2)).view(len(qs), -1)
    write_beams(f, {**json.loads((d/'beams_train.json').read_text()), **beams_to_records(q, beams, scores, cands, acc)})
    return f

def ensure_sft(work, seed, version, shot, quick, name=None, train_file='beams_train.json'):
    from lever_plus.sft import run_sft
    from lever_plus.sim import SimScorer
    data, out = data_dir(work, seed, shot), run_dir(work, seed, name or f'sft_{version}', shot)
    if _done(out): return out
    say(f'seed {seed} shot {shot}: SFT {version} → {out}')
    t = time.perf_counter()  # overwrite: an unfinished earlier attempt is replaced, but never a run another process holds (its lock)
    res = run_sft(data/train_file, data, out, version, make_config(seed, quick), data/'beams_val.json', SimScorer.from_dir(data), overwrite=True)
    _finish(out, dict(seconds=time.perf_counter() - t, best_epoch=res['best_epoch'], n_params=res['n_params'],
                      n_train=res['n_train'], n_val=res['n_val']))
    return out

def ensure_post(work, seed, name, shot, quick):
    from lever_plus.train import run_post_train
    from lever_plus.sim import SimScorer
    data, out = data_dir(work, seed, shot), run_dir(work, seed, name, shot)
    if _done(out): return out
    over = json.loads(json.dumps(VARIANTS[name]).replace('<data>', str(data)))
    sft = run_dir(work, seed, over.pop('_sft', 'sft_v2'), shot)/'best'
    say(f'seed {seed} shot {shot}: post-train {name} → {out}')
    t = time.perf_counter()
    train_file = data/over.pop('_train', 'beams_train.json')
    res = run_post_train(sft, train_file, data, out, make_config(seed, quick, over),
                         data/'beams_val.json', SimScorer.from_dir(data), progress=False, overwrite=True)  # see ensure_sft
    _finish(out, dict(seconds=time.perf_counter() - t, best_epoch=res['best_epoch'], skipped_steps=res['skipped_steps']))
    return out

def stage_train(a):
    work = a.work
    for seed in a.seeds if 'main' in a.parts else ():  # 1) the main table first
        ensure_data(work, seed, 2, a.quick)
        ensure_sft(work, seed, 'v2', 2, a.quick)
        for v in MAIN: ensure_post(work, seed, v, 2, a.quick)
        ensure_sft(work, seed, 'v1', 2, a.quick)
    for seed in a.seeds if 'variants' in a.parts else ():  # 2) ablations, 3) online / hybrid
        ensure_extras(work, seed, a.quick)
        for v in ABLATIONS + ONLINE: ensure_post(work, seed, v, 2, a.quick)
        ensure_plus(work, seed, a.quick)  # the budget-matched alternative to online_unl: spend its calls on beam search instead
        ensure_sft(work, seed, 'v2', 2, a.quick, 'sft_v2_plus', 'beams_train_plus.json')
    for seed in a.seeds if 'arch' in a.parts else ():  # 5) upstream Lever-Plus's v2 network: SFT, then the best variant
        ensure_sft(work, seed, 'v2_upstream', 2, a.quick)
        for v in ARCH: ensure_post(work, seed, v, 2, a.quick)
    for shot in a.shots if 'sweep' in a.parts else ():  # 4) the shot sweep at the first seed
        ensure_data(work, a.seeds[0], shot, a.quick)
        ensure_sft(work, a.seeds[0], 'v2', shot, a.quick)
        ensure_post(work, a.seeds[0], 'v3', shot, a.quick)

# ---------------------------------------------------------------------------------------------------------
# eval: per-query results of every method on the test queries → WORK/eval/seed{n}_s{S}.json

PLUS_LABEL = 'SFT v2 + beams of 350 unlabeled queries'
UPSTREAM_SFT_LABEL = 'SFT v2, upstream architecture'
V3_OFFLINE, V3_OFFLINE_RCE = 'v3-offline', 'v3-offline, RCE only'  # the Lever-Plus recipe (RCE warm-up + offline GRPO), its warm-up alone
METHOD_RUNS = {'SFT v1': 'sft_v1', 'SFT v2': 'sft_v2', V3_OFFLINE_RCE: 'v3_rce', V3_OFFLINE: 'v3', PLUS_LABEL: 'sft_v2_plus',
               UPSTREAM_SFT_LABEL: 'sft_v2_upstream'}
VARIANT_LABELS = {'no_rce': 'no RCE warm-up', 'no_curriculum': 'no curriculum', 'fixed_beta': 'fixed β',
                  'refresh_old': 'π_old refreshed', 'no_std': 'no-std advantage', 'online': 'online GRPO (8 samples)',
                  'hybrid': 'hybrid GRPO (8 samples + 5 beams)', 'rl_offline': 'offline GRPO, RL-format groups',
                  'online_unl_1ep': 'v3-online, 1 epoch', 'online_unl': 'v3-online, 6 epochs', 'online_unl_10ep': 'v3-online, 10 epochs',
                  'online_unl_upstream': 'v3-online, 6 epochs, upstream architecture'}
# names of the same methods in evaluation files written before the names above
RENAMED = {'v3 (RCE+GRPO)': V3_OFFLINE, 'v3 (RCE only)': V3_OFFLINE_RCE,
           **{f'online GRPO + unlabeled queries, {k}': f'v3-online, {k}' for k in ('1 epoch', '6 epochs', '10 epochs', '6 epochs, upstream architecture')}}

def _best(d:Path)->Path|None: return d/'best' if (d/'best'/'model.safetensors').is_file() else None

def eval_one(work, seed, shot, n_boot):
    "Evaluate every finished method of (seed, shot) on its test queries; per-query values kept"
    from lever_plus.data import load_datasets
    from lever_plus.sim import SimScorer
    from lever_plus.model import load_selector
    from lever_plus.evaluate import evaluate_methods
    data = data_dir(work, seed, shot)
    if not _done(data): return None
    methods = {'random': 'random', 'text-sim top-k': 'text_sim', 'img-sim top-k': 'img_sim', 'mix-sim top-k': 'mix_sim'}
    runs = dict(METHOD_RUNS, **{VARIANT_LABELS[v]: v for v in ABLATIONS + ONLINE + ARCH})
    for label, name in runs.items():
        b = _best(run_dir(work, seed, name, shot))
        if b is not None and _done(run_dir(work, seed, name, shot)): methods[label] = load_selector(b)  # any version
    methods['beam oracle'] = 'oracle'
    test = load_datasets(data/'beams_test.json', data, val_frac=0)['train']
    scorer = SimScorer.from_dir(data)
    rows = evaluate_methods(methods, test, scorer, seed, n_boot=n_boot, per_query=True)
    hits = {m: beam_hits(meth, test, seed) for m, meth in methods.items() if m != 'beam oracle'}
    # the same selectors on their own TRAINING queries: how much of the training-set quality carries over to new queries
    train = load_datasets(data/'beams_train.json', data, val_frac=0)['train']
    gap = [m for m in ('mix-sim top-k', 'SFT v2', V3_OFFLINE, VARIANT_LABELS['online'], VARIANT_LABELS['online_unl'],
                       VARIANT_LABELS['online_unl_10ep']) if m in methods]
    train_info = {r['method']: r['info'] for r in evaluate_methods({m: methods[m] for m in gap}, train, scorer, seed, n_boot=10)}
    return dict(seed=seed, shot=shot, n_query=len(test), rows=rows, beam_hits=hits, train_info=train_info)

def beam_hits(method, ds, seed)->dict:
    "How often a method's pick is one of the query's beams: as the same ordered sequence, and as the same set of shots"
    import torch
    from lever_plus.evaluate import select_sequences
    from lever_plus.data import make_loader
    _, ids = select_sequences(method, ds, seed)  # (N, S) pool ids
    b = next(iter(make_loader(ds, len(ds), shuffle=False)))
    beams = b['cand_ids'][:, None, :].expand(-1, b['beams'].shape[1], -1).gather(2, b['beams'])  # (N, G, S) pool ids
    seq = ((beams == ids[:, None]).all(-1) & b['beam_mask']).any(-1)
    same_set = ((beams.sort(-1).values == ids.sort(-1).values[:, None]).all(-1) & b['beam_mask']).any(-1)
    top = (beams[:, 0] == ids).all(-1)
    return dict(seq=float(seq.float().mean()), set=float(same_set.float().mean()), top=float(top.float().mean()))

def stage_eval(a):
    (a.work/'eval').mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for shot in (2,) + (tuple(a.shots) if seed == a.seeds[0] else ()):
            say(f'eval seed {seed} shot {shot}')
            r = eval_one(a.work, seed, shot, a.n_boot)
            if r is not None: (a.work/'eval'/f'seed{seed}_s{shot}.json').write_text(json.dumps(r) + '\n')

# ---------------------------------------------------------------------------------------------------------
# report: pooled tables, training summaries and figures → OUT/results.json + OUT/*.png

def _load_eval(work, seed, shot):
    f = work/'eval'/f'seed{seed}_s{shot}.json'
    if not f.is_file(): return None
    e = json.loads(f.read_text())
    for r in e['rows']: r['method'] = RENAMED.get(r['method'], r['method'])
    for k in ('beam_hits', 'train_info'): e[k] = {RENAMED.get(m, m): v for m, v in e.get(k, {}).items()}
    return e

def run_summary(d:Path)->dict|None:
    "Small summary of a post-training run: per-epoch validation, β, KL, advantage histograms, scorer calls, time"
    from lever_plus.train import read_metrics
    done = _done(d)
    if not done or not (d/'metrics.jsonl').is_file(): return None
    rows = read_metrics(d/'metrics.jsonl')
    steps, eps = [r for r in rows if r['kind'] == 'step'], [r for r in rows if r['kind'] == 'epoch']
    r4 = lambda x: None if x is None else round(float(x), 4)
    return dict(seconds=round(done['seconds'], 1), best_epoch=done['best_epoch'],
                scorer_calls=max([r.get('scorer_calls', 0) for r in steps] or [0]),
                n_steps=len(steps),
                epochs=[dict(epoch=e['epoch'], stage=e['stage'], val_info=r4(e.get('val_info')), val_acc=r4(e.get('val_acc')),
                             val_kl=r4(e.get('val_kl')), beta=r4(e.get('beta')), train_loss=r4(e.get('train_loss')),
                             adv_hist=[int(x) for x in e['adv_hist']] if e.get('adv_hist') else None, adv_clip=e.get('adv_clip'))
                        for e in eps],
                kl_steps=[r4(r.get('kl')) for r in steps if r.get('kl') is not None][::max(1, len(steps) // 60)],
                beta_steps=[r4(r.get('beta')) for r in steps if r.get('beta') is not None][::max(1, len(steps) // 60)])

def rl_calls(d:Path)->dict|None:
    "Extra scorer calls of the RL-format training file: trajectories per query that are not beams (those were scored by beam search)"
    f = d/'beams_train_rl.json'
    if not f.is_file(): return None
    recs = {k: v for k, v in json.loads(f.read_text()).items() if k != '_meta'}
    n = [sum(1 for t in r['pointer_candidates'] if t.get('gen_method') != 'beam') for r in recs.values()]
    return dict(per_query=round(float(np.mean(n)), 2), n_train=len(recs))

def sft_curve(d:Path)->list:
    "Validation info score per SFT epoch"
    from lever_plus.train import read_metrics
    f = d/'metrics.jsonl'
    return [round(r['val_info'], 4) for r in read_metrics(f) if r['kind'] == 'epoch' and 'val_info' in r] if f.is_file() else []

def explore_views(work, seed:int, n:int=12)->list:
    "Views (lever_plus.explore.query_view) of `n` random test queries of `seed`: mix-sim vs SFT v2 vs v3 vs the oracle"
    import torch
    from lever_plus.data import load_datasets
    from lever_plus.sim import SimScorer
    from lever_plus.model import PointerSelector
    from lever_plus.explore import query_view
    data = data_dir(work, seed, 2)
    ds = load_datasets(data/'beams_test.json', data, val_frac=0)['train']
    models = {'mix-sim top-k': 'mix_sim', 'SFT v2': PointerSelector.from_pretrained(run_dir(work, seed, 'sft_v2')/'best'),
              V3_OFFLINE: PointerSelector.from_pretrained(run_dir(work, seed, 'v3')/'best'), 'beam oracle': 'oracle'}
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()  # random, not chosen by score
    scorer = SimScorer.from_dir(data)
    return [query_view(ds, i, scorer, models, digits=3) for i in idx]

def stage_report(a):
    from lever_plus.evaluate import summarize_seeds, paired_gain, results_table
    import torch
    out, work = a.out, a.work
    out.mkdir(parents=True, exist_ok=True)
    evals = [e for e in (_load_eval(work, s, 2) for s in a.seeds) if e is not None]
    if not evals: sys.exit(f'no evaluation results under {work}/eval: run the eval stage first')
    seeds = [e['seed'] for e in evals]
    per_seed = [{r['method']: r for r in e['rows']} for e in evals]
    main_methods = ['random', 'text-sim top-k', 'img-sim top-k', 'mix-sim top-k', 'SFT v1', 'SFT v2', V3_OFFLINE_RCE,
                    V3_OFFLINE, 'beam oracle']
    ablation_methods = ['SFT v2', V3_OFFLINE] + [VARIANT_LABELS[v] for v in ABLATIONS]
    online_methods = ['SFT v2', V3_OFFLINE] + [VARIANT_LABELS[v] for v in ONLINE] + ([PLUS_LABEL] if all(PLUS_LABEL in p for p in per_seed) else [])
    main = summarize_seeds(per_seed, main_methods, oracle='beam oracle', seed=0, n_boot=a.n_boot)
    ablation = summarize_seeds(per_seed, ablation_methods, oracle='beam oracle', seed=0, n_boot=a.n_boot)
    online = summarize_seeds(per_seed, online_methods, oracle='beam oracle', seed=0, n_boot=a.n_boot)
    sims = ['text-sim top-k', 'img-sim top-k', 'mix-sim top-k']
    best_sim = max(sims, key=lambda m: next(r['info'] for r in main if r['method'] == m))
    gains = {f'{x} vs {y}': paired_gain(per_seed, x, y, seed=0, n_boot=a.n_boot)
             for x, y in [(V3_OFFLINE, 'SFT v2'), (V3_OFFLINE, best_sim), ('SFT v2', best_sim),
                          (V3_OFFLINE_RCE, 'SFT v2'), (V3_OFFLINE, V3_OFFLINE_RCE)]
             if all(x in p and y in p for p in per_seed)}
    ablation_gains = {VARIANT_LABELS[v]: paired_gain(per_seed, VARIANT_LABELS[v], V3_OFFLINE, seed=0, n_boot=a.n_boot)
                      for v in ABLATIONS + ONLINE if all(VARIANT_LABELS[v] in p and V3_OFFLINE in p for p in per_seed)}
    online_vs_sft = {VARIANT_LABELS[v]: paired_gain(per_seed, VARIANT_LABELS[v], 'SFT v2', seed=0, n_boot=a.n_boot)
                     for v in ONLINE if all(VARIANT_LABELS[v] in p and 'SFT v2' in p for p in per_seed)}
    if all(PLUS_LABEL in p for p in per_seed): online_vs_sft[PLUS_LABEL] = paired_gain(per_seed, PLUS_LABEL, 'SFT v2', seed=0, n_boot=a.n_boot)
    # the architecture comparison: this package's v2 network vs upstream Lever-Plus's, as SFT and as the online_unl variant
    arch_methods = ['SFT v2', UPSTREAM_SFT_LABEL, VARIANT_LABELS['online_unl'], VARIANT_LABELS['online_unl_upstream']]
    has_arch = all(m in p for p in per_seed for m in arch_methods)
    arch = summarize_seeds(per_seed, arch_methods, oracle='beam oracle', seed=0, n_boot=a.n_boot) if has_arch else None
    arch_gains = {f'{x} vs {y}': paired_gain(per_seed, x, y, seed=0, n_boot=a.n_boot)
                  for x, y in [(UPSTREAM_SFT_LABEL, 'SFT v2'), (VARIANT_LABELS['online_unl_upstream'], VARIANT_LABELS['online_unl']),
                               (VARIANT_LABELS['online_unl_upstream'], UPSTREAM_SFT_LABEL)]} if has_arch else None
    # training summaries per variant and seed; scorer calls of the beam data (offline budget)
    runs = {v: {str(s): run_summary(run_dir(work, s, v)) for s in seeds} for v in VARIANTS}
    # the best post-training variant, chosen on VALIDATION queries (mean over seeds of the best epoch's val info), then tested
    label = lambda v: {'v3': V3_OFFLINE, 'v3_rce': V3_OFFLINE_RCE}.get(v, VARIANT_LABELS.get(v, v))
    val_best = {v: float(np.mean([next(e['val_info'] for e in r['epochs'] if e['epoch'] == r['best_epoch']) for r in per.values()]))
                for v, per in runs.items() if per and all(per.values()) and all(label(v) in p for p in per_seed)}
    best_v = max(val_best, key=val_best.get) if val_best else None
    if best_v:
        for y in ('SFT v2', best_sim, PLUS_LABEL):
            if all(y in p for p in per_seed): gains[f'best variant ({label(best_v)}) vs {y}'] = paired_gain(per_seed, label(best_v), y, seed=0, n_boot=a.n_boot)
    data_calls = {}
    for s in seeds:
        d = _done(data_dir(work, s, 2))['summary']
        K, S, W = d['K'], d['shot_num'], d['beam_width']
        data_calls[str(s)] = dict(per_query=K + sum(min(W, K ** i) * K for i in range(1, S)),   # beam search: K at step 1, ≤ W·K after
                                  n_train=d['splits']['train']['n_query'])
    hit_methods = [m for m in main_methods if m != 'beam oracle'] + [VARIANT_LABELS[v] for v in ONLINE]
    hits = {m: {k: float(np.mean([e['beam_hits'][m][k] for e in evals if m in e.get('beam_hits', {})]))
                for k in ('seq', 'set', 'top')} for m in hit_methods if all(m in e.get('beam_hits', {}) for e in evals)}
    sweep = []
    for shot in sorted((2,) + tuple(a.shots)):
        e = _load_eval(work, seeds[0], shot)
        if e is None: continue
        r = {x['method']: x for x in e['rows']}
        sweep.append(dict(shot=shot, **{m: {k: r[m][k] for k in ('info', 'info_ci', 'acc', 'acc_ci', 'frac_oracle')}
                                        for m in ('random', best_sim, 'SFT v2', V3_OFFLINE, 'beam oracle') if m in r}))
    res = dict(
        generated=time.strftime('%Y-%m-%d %H:%M'), command='python tools/make_results.py' + (' --quick' if a.quick else ''),
        machine=f'{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}',
        seeds=seeds, n_test_per_seed=[e['n_query'] for e in evals], quick=a.quick,
        config=dataclasses.asdict(make_config(seeds[0], a.quick)), variants=VARIANTS,
        main=main, main_table=results_table(main), best_similarity=best_sim, gains=gains,
        ablation=ablation, ablation_table=results_table(ablation), ablation_gains=ablation_gains, online_vs_sft=online_vs_sft,
        online=online, online_table=results_table(online), runs=runs, beam_data_scorer_calls=data_calls,
        arch=arch, arch_table=results_table(arch) if arch else None, arch_gains=arch_gains,
        sft={v: {str(s): _done(run_dir(work, s, f'sft_{v}')) for s in seeds} for v in ('v1', 'v2', 'v2_plus', 'v2_upstream')},
        sft_curves={str(s): sft_curve(run_dir(work, s, 'sft_v2')) for s in seeds},
        data={str(s): _done(data_dir(work, s, 2)) for s in seeds},
        shot_sweep=dict(seed=seeds[0], rows=sweep), beam_hits=hits,
        best_variant=dict(name=best_v, label=label(best_v) if best_v else None, val_info=val_best,
                          how='highest mean (over seeds) validation info score at the epoch kept as best/'),
        rl_data_scorer_calls={str(s): rl_calls(data_dir(work, s, 2)) for s in seeds},
        n_unlabeled=N_UNLABELED_QUICK if a.quick else N_UNLABELED,
        train_info={m: round(float(np.mean([e['train_info'][m] for e in evals])), 4) for m in evals[0].get('train_info', {})
                    if all(m in e.get('train_info', {}) for e in evals)})
    (out/'results.json').write_text(_dumps(_round(res)) + '\n')
    from lever_plus.explore import save_views
    save_views(explore_views(work, seeds[0]), out/'explore.json')
    all_figures(res, work, out)
    say(f'wrote {out/"results.json"} and figures')

# ---------------------------------------------------------------------------------------------------------
# figures (PNG, dpi 80, each well under 100 KB)

def _plt():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt

def _save(fig, path, dpi=80):
    fig.savefig(path, dpi=dpi); _plt().close(fig)

def fig_gains(res, path):
    "Paired relative gains with 95 % CIs, and the targets"
    plt = _plt()
    items = list(res['gains'].items())
    best = (res.get('best_variant') or {}).get('label')
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(items) + 2.0))
    y = range(len(items))[::-1]
    for yy, (k, g) in zip(y, items):
        ax.errorbar(100 * g['rel'], yy, xerr=[[100 * (g['rel'] - g['rel_ci'][0])], [100 * (g['rel_ci'][1] - g['rel'])]], fmt='o', capsize=4,
                    c='#c26b1a' if k.startswith('best') else '#3a9a5b' if g['a'].startswith('v3') else '#4a7bb7')
        ax.annotate(f"{100 * g['rel']:+.1f} %", (100 * g['rel'], yy), xytext=(0, 7), textcoords='offset points', ha='center', fontsize=8)
    ax.set_yticks(list(y), [k.replace(f'best variant ({best})', 'best variant') if best else k for k in dict(items)], fontsize=8)
    ax.axvline(0, c='k', lw=0.8)
    for t, lab, dy in ((10, 'target vs SFT v2: +10 %', 1.01), (20, 'online vs best sim.: +20 %', 1.07), (25, 'v3-offline vs best sim.: +25 %', 1.13)):
        ax.axvline(t, ls=':', c='#c33', lw=1)
        ax.text(t, dy, lab, transform=ax.get_xaxis_transform(), fontsize=7, color='#c33', ha='center', va='bottom')
    ax.set_xlabel('relative gain in mean info score, % (paired, seed-stratified bootstrap 95 % CI)'
                  + (f'\nbest variant (chosen on validation queries) = {best}' if best else ''), fontsize=9)
    ax.set_ylim(-0.6, len(items) - 0.3); ax.grid(axis='x', alpha=0.3); fig.tight_layout(); _save(fig, path)

def fig_curves(res, path):
    "SFT v2 validation curves per seed; β during GRPO; post-training validation info per epoch (mean over seeds), offline and online variants apart"
    plt = _plt()
    fig, ax = plt.subplots(2, 2, figsize=(12, 8.6))
    for s, c in res['sft_curves'].items(): ax[0, 0].plot(range(1, len(c) + 1), c, 'o-', ms=3, label=f'seed {s}')
    ax[0, 0].set_title('SFT v2: validation info score (greedy)', fontsize=10); ax[0, 0].set_xlabel('SFT epoch'); ax[0, 0].legend(fontsize=8)
    sft0 = np.mean([max(c) for c in res['sft_curves'].values() if c]) if res['sft_curves'] else None
    panels = {False: ax[1, 0], True: ax[1, 1]}  # online (samples scored during training) or not
    n_lines = {False: 0, True: 0}
    for v, per in res['runs'].items():
        runs = [r for r in per.values() if r]
        if not runs: continue
        by_epoch = {}  # epoch → validation info of each seed that logged it (a metrics file can lack epochs)
        for r in runs:
            for e in r['epochs']: by_epoch.setdefault(e['epoch'], []).append(e['val_info'])
        xs = sorted(by_epoch); y = [np.mean(by_epoch[e]) for e in xs]
        lab = {'v3': V3_OFFLINE, 'v3_rce': V3_OFFLINE_RCE}.get(v, VARIANT_LABELS.get(v, v))
        short = [e for e in xs if len(by_epoch[e]) < len(runs)]
        if short: lab += f' (epochs {short[0]}–{short[-1]}: {min(len(by_epoch[e]) for e in short)} of {len(runs)} seeds)'
        online = 'online' in v or v == 'hybrid'
        i = n_lines[online]; n_lines[online] += 1
        panels[online].plot(xs, y, 'os^Dv<>p'[i % 8] + '-', ms=4, lw=2.2 if v in ('v3', 'online_unl') else 1.2,
                            c=plt.cm.tab10(i % 10), label=lab)
        if v in ('v3', 'fixed_beta', 'online'):
            ax[0, 1].plot(range(1, len(runs[0]['beta_steps']) + 1), runs[0]['beta_steps'], label=f'β, {lab}', lw=1.2)
    for online, a in panels.items():
        if sft0 is not None: a.axhline(sft0, ls='--', c='#4a7bb7', lw=1, label='SFT v2 (best val, mean)')
        a.set_title(('online variants (samples scored in training)' if online else 'offline variants (beams only)')
                    + ': validation info score, mean of seeds', fontsize=10)
        a.set_xlabel('post-training epoch'); a.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        a.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax[0, 1].set_title('KL coefficient β during GRPO (first seed)', fontsize=10); ax[0, 1].set_xlabel('GRPO step (subsampled)'); ax[0, 1].legend(fontsize=8)
    ax[0, 0].xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for x in ax.flat: x.grid(alpha=0.3)
    fig.tight_layout(); _save(fig, path, dpi=70)  # four panels: ~100 KB

def fig_adv(res, path):
    "Advantage histograms of the last GRPO epoch (first seed): z-score vs no-std vs online vs hybrid"
    plt = _plt()
    which = [('v3', 'v3-offline: z-score, 5 offline beams'), ('no_std', 'no-std advantage'), ('online', 'online, 8 samples'), ('hybrid', 'hybrid, 8 samples + 5 beams')]
    fig, axs = plt.subplots(1, len(which), figsize=(14, 3), sharey=False)
    s0 = str(res['seeds'][0])
    for ax, (v, lab) in zip(axs, which):
        r = (res['runs'].get(v) or {}).get(s0)
        eps = [e for e in (r or {}).get('epochs', []) if e.get('adv_hist')]
        if not eps: ax.set_title(f'{lab}: no run', fontsize=9); continue
        h, clip = eps[-1]['adv_hist'], eps[-1]['adv_clip']
        edges = np.linspace(-clip, clip, len(h) + 1)
        ax.bar(edges[:-1], h, width=np.diff(edges), align='edge', color='#3a9a5b' if v == 'v3' else '#e08a3c', edgecolor='w', lw=0.3)
        ax.set_title(f"{lab} (epoch {eps[-1]['epoch']})", fontsize=9); ax.set_xlabel('advantage')
    fig.tight_layout(); _save(fig, path)

def fig_online(res, path):
    "Issue 10: info score against extra scorer calls per training query (mean of seeds), with 95 % CIs"
    plt = _plt()
    rows = {r['method']: r for r in res['online']}
    per_q = np.mean([d['per_query'] for d in res['beam_data_scorer_calls'].values()])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    pts = [('SFT v2', None), (V3_OFFLINE, 'v3')] + [(VARIANT_LABELS[v], v) for v in ONLINE]
    for i, (m, v) in enumerate(pts):
        if m not in rows: continue
        runs = [r for r in (res['runs'].get(v) or {}).values() if r] if v else []
        n_train = np.mean([d['n_train'] for d in res['beam_data_scorer_calls'].values()])
        x = np.mean([r['scorer_calls'] for r in runs]) / n_train if runs else 0.
        if v == 'rl_offline': x = np.mean([d['per_query'] for d in res['rl_data_scorer_calls'].values() if d])
        r = rows[m]
        ax.errorbar(x, r['info'], yerr=[[r['info'] - r['info_ci'][0]], [r['info_ci'][1] - r['info']]], fmt='os^Dvp'[i % 6], ms=8, capsize=4, label=m)
    ax.set_xlabel(f'extra scorer calls per training query in post-training\n(on top of {per_q:.0f} per query spent by beam search on the beam data)')
    ax.set_ylabel('test info score (95 % CI)'); ax.grid(alpha=0.3); ax.legend(fontsize=8)
    fig.tight_layout(); _save(fig, path)

def all_figures(res, work, out):
    from lever_plus.evaluate import plot_eval, plot_shots
    n = len(res['seeds'])
    plot_eval(res['main'], out/'eval.png', title=f'held-out test queries, {n} seed{"s" if n > 1 else ""} pooled (95 % CI)')
    plot_eval(res['ablation'], out/'ablation.png', title='ablations (post-training from the same SFT v2 per seed)')
    plot_eval(res['online'], out/'online_bars.png', title='offline vs online vs hybrid GRPO')
    fig_gains(res, out/'gains.png'); fig_curves(res, out/'curves.png'); fig_adv(res, out/'adv_hist.png'); fig_online(res, out/'online.png')
    sw = res['shot_sweep']['rows']
    if len(sw) > 1:
        by = {r['shot']: [dict(method=m, **v) for m, v in r.items() if m != 'shot'] for r in sw}
        plot_shots(by, out/'shots.png')
    v3 = run_dir(work, res['seeds'][0], 'v3')/'metrics.jsonl'
    if v3.is_file():  # drawn anew (not the run's own curves.png) so the figure follows the current plot_curves
        from lever_plus.curves import plot_curves
        plot_curves(v3, out/'curves_v3_seed0.png')

# ---------------------------------------------------------------------------------------------------------
# notebooks: re-run the results page (and the explorer's docs figure) so their saved outputs match the JSON

def stage_notebooks(a):
    from run_notebooks import run_notebook  # tools/run_notebooks.py, beside this file
    run_notebook(ROOT/'nbs'/'results.ipynb')
    run_notebook(ROOT/'nbs'/'15_explore.ipynb', keep=lambda c: c.source.startswith('# docs figure'))
    say('re-ran nbs/results.ipynb and the docs figure of nbs/15_explore.ipynb')

def _dumps(x)->str:
    "Indented JSON with lists of numbers kept on one line (a small, readable, diff-friendly file)"
    import re
    text = json.dumps(x, indent=1, ensure_ascii=False)
    return re.sub(r'\[\s*((?:-?[\d.eE+-]+|null)(?:,\s*(?:-?[\d.eE+-]+|null))*)\s*\]', lambda m: '[' + ', '.join(v.strip() for v in m.group(1).split(',')) + ']', text)

def _round(x, nd=5):
    if isinstance(x, float): return round(x, nd)
    if isinstance(x, dict): return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [_round(v, nd) for v in x]
    return x

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('stages', nargs='*', default=['train', 'eval', 'report', 'notebooks'], help='train, eval, report, notebooks (default: all four)')
    p.add_argument('--work', type=Path, default=ROOT/'runs'/'results', help='runs, checkpoints and per-query results (git-ignored)')
    p.add_argument('--out', type=Path, default=ROOT/'nbs'/'results', help='results.json + figures for the docs page')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--shots', type=int, nargs='*', default=list(SWEEP_SHOTS), help='extra shot numbers of the sweep (first seed)')
    p.add_argument('--parts', nargs='+', default=['main', 'variants', 'arch', 'sweep'], choices=['main', 'variants', 'arch', 'sweep'],
                   help='which training runs (e.g. two processes: one `--parts main variants`, one `--parts sweep`)')
    p.add_argument('--n_boot', type=int, default=1000, help='bootstrap resamples of the CIs')
    p.add_argument('--threads', type=int, default=1, help='torch threads (0 = torch default); on a busy 2-core machine 1 is several times faster')
    p.add_argument('--quick', action='store_true', help='tiny world and few epochs (a smoke run, not results)')
    a = p.parse_args(argv)
    bad = set(a.stages) - {'train', 'eval', 'report', 'notebooks'}
    if bad: p.error(f'unknown stage(s) {sorted(bad)}')
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    for st in ('train', 'eval', 'report', 'notebooks'):
        if st in a.stages: dict(train=stage_train, eval=stage_eval, report=stage_report, notebooks=stage_notebooks)[st](a)
    say(f'done in {time.perf_counter() - t0:.0f} s')

if __name__ == '__main__': main()
