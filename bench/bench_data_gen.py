"""Benchmark: wall time of `lever_plus.beams.make_data` (simulated world + candidates + beam search + files).

usage: python bench/bench_data_gen.py [--threads 2] [--repeats 3] [--shots 1 2 4]
Prints one row per configuration (median over repeats) with the time of each phase.
"""
import argparse, platform, statistics, tempfile, time
import torch
from lever_plus.beams import make_data

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2, help='torch intra-op threads (the target machine has 2 cores)')
    p.add_argument('--repeats', type=int, default=3, help='runs per configuration (the median is reported)')
    p.add_argument('--shots', type=int, nargs='+', default=[2, 4], help='shot_num values to time')
    p.add_argument('--n_pool', type=int, default=4000)
    p.add_argument('--n_train', type=int, default=1000)
    p.add_argument('--K', type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f'make_data benchmark: torch {torch.__version__}, {a.threads} threads, {platform.processor() or platform.machine()}')
    print(f'world: n_pool={a.n_pool}, n_train={a.n_train}, n_val=200, n_test=200, K={a.K}, sampler=mix, beam_width=5\n')
    hdr = f"{'shot_num':>8} {'world+files':>11} {'candidates':>10} {'beams+write':>11} {'total s':>8} {'queries/s':>9} {'top1 info (train)':>17}"
    print(hdr); print('-' * len(hdr))
    for s in a.shots:
        runs = []
        for _ in range(a.repeats):
            with tempfile.TemporaryDirectory() as d:
                runs.append(make_data(d, seed=0, shot_num=s, K=a.K, n_pool=a.n_pool, n_train=a.n_train, progress=False))
        r = sorted(runs, key=lambda x: x['seconds']['total'])[len(runs) // 2]
        t = r['seconds']
        beams = t['total'] - t['world'] - t['candidates']
        print(f"{s:8d} {t['world']:11.2f} {t['candidates']:10.2f} {beams:11.2f} {t['total']:8.2f} {r['n_query'] / t['total']:9.0f} "
              f"{r['splits']['train']['top1_info']:17.3f}")

if __name__ == '__main__': main()
