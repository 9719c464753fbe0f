"""Benchmark: time per post-training epoch at 4 dataset sizes; it should grow linearly (exponent ≈ 1).

    python bench/bench_scaling.py                          # 250 500 1000 2000 queries, GRPO epochs, K 64, d_in 128
    python bench/bench_scaling.py --phases rce grpo        # RCE epochs too
    python bench/bench_scaling.py --sizes 500 1000 2000 4000 --threads 0

Each size runs the real trainer (`lever_plus.train.post_train`) for two epochs of one phase on synthetic beam
data (random features, K candidates, G beams of S shots with random scores; no validation), and times the
*second* epoch from the trainer's own epoch rows: a whole epoch including batching, the cached π_ref/π_old
lookups, the optimiser and the checkpoint write, but not one-off start-up (model copy, the first π_ref cache).
The scaling exponent is the slope of log(time) against log(size), fitted by least squares.
"""
import argparse, tempfile, time
import numpy as np
import torch

def synthetic(n:int, K:int, G:int, S:int, d_in:int, n_pool:int, seed:int=0):
    "A `BeamDataset` of `n` queries with random features and random (sorted) beam scores"
    from lever_plus.data import EmbeddingStore, QueryRecord, BeamDataset
    g = torch.Generator().manual_seed(seed)
    store = EmbeddingStore(torch.randn(n_pool, d_in, generator=g), torch.randn(n, d_in, generator=g), {}, {})
    recs = {}
    for q in range(n):
        cand = torch.randperm(n_pool, generator=g)[:K]
        pos = torch.rand(G, K, generator=g).argsort(-1)[:, :S]  # (G, S) distinct per beam
        recs[q] = QueryRecord(q, cand[pos].tolist(), sorted(torch.rand(G, generator=g).tolist(), reverse=True), cand.tolist())
    return BeamDataset(recs, store, K, S, G)

def epoch_time(ds, phase:str, a)->float:
    from lever_plus.core import TrainConfig, ModelConfig, DataConfig, CurriculumConfig, RunConfig
    from lever_plus.model import PointerSelector
    from lever_plus.train import post_train
    cur = CurriculumConfig(rce_epochs=2, grpo_epochs=0) if phase == 'rce' else CurriculumConfig(rce_epochs=0, grpo_epochs=2, top_k_frac=0.0)
    cfg = TrainConfig(model=ModelConfig(d_in=a.d_in, d_model=a.d_model, n_layers=a.n_layers), data=DataConfig(K=a.K, shot_num=a.S, batch_size=a.B),
                      curriculum=cur, run=RunConfig(seed=0, device=a.device))
    stamps = {}
    def log(row):
        if row['kind'] == 'epoch': stamps[row['epoch']] = time.perf_counter()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        post_train(cfg, PointerSelector(cfg.model), ds, None, d, None, log=log, progress=False)
    return stamps[2] - stamps[1]

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[250, 500, 1000, 2000], help='training queries')
    p.add_argument('--phases', nargs='+', default=['grpo'], choices=['rce', 'grpo'])
    p.add_argument('--K', type=int, default=64); p.add_argument('--S', type=int, default=2); p.add_argument('--G', type=int, default=5)
    p.add_argument('--d_in', type=int, default=128, help='input size (the simulated world: 64 img + 64 txt)')
    p.add_argument('--d_model', type=int, default=256); p.add_argument('--n_layers', type=int, default=3)
    p.add_argument('--B', type=int, default=32, help='queries per batch')
    p.add_argument('--n_pool', type=int, default=4000)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1, help='torch threads (0 = torch default)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(f'epoch time vs dataset size: torch {torch.__version__}, {a.device}, threads {torch.get_num_threads()}; '
          f'K {a.K}, S {a.S}, G {a.G}, B {a.B}, d_in {a.d_in}, d_model {a.d_model}, {a.n_layers} layers\n')
    hdr = f"{'phase':>5} {'queries':>7} {'s/epoch':>8} {'queries/s':>9} {'s per 1k queries':>16}"
    print(hdr); print('-' * len(hdr))
    for ph in a.phases:
        ts = []
        for n in a.sizes:
            t = epoch_time(synthetic(n, a.K, a.G, a.S, a.d_in, a.n_pool), ph, a); ts.append(t)
            print(f'{ph:>5} {n:7d} {t:8.2f} {n / t:9.0f} {1000 * t / n:16.2f}', flush=True)
        slope, icpt = np.polyfit(np.log(a.sizes), np.log(ts), 1)
        print(f'{ph:>5} scaling exponent (slope of log time vs log size): {slope:.3f}   (1 = linear)\n')

if __name__ == '__main__': main()
