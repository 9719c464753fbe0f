"""Benchmark: `PointerSelector.log_prob` over [B, G, S] beams, encoding each query's pool once,
against re-encoding the pool for every beam (the way upstream scores trajectories).

    python bench/bench_log_prob.py                       # B 32, G 5, S 2 3, K 32 64 128, d_in 768
    python bench/bench_log_prob.py --device cuda --reps 20
    python bench/bench_log_prob.py --threads 0            # torch's default thread count

Three ways to get the same (B, G) log-probs:
  once     model.log_prob(batch): one encoding per query, teacher forcing batched over (B, G, S)
  per-beam G calls with one beam each (every call re-encodes the B pools): upstream's loop
  flat     one call on B*G rows, each query's pool repeated G times (re-encoding, but vectorised)
Times are the best of --reps runs after a warm-up (robust to other load on a shared machine), forward only (no_grad, eval mode) and
forward + backward (train mode, as in SFT / RCE / GRPO steps). Speed-up = other / once.
"""
import argparse, time
import torch
from lever_plus.core import ModelConfig, get_device, set_seed
from lever_plus.model import PointerSelector


def per_beam(model, batch):
    "Upstream-style: one call per beam, each re-encoding the pool"
    G = batch['beams'].shape[1]
    return torch.cat([model.log_prob({**batch, 'beams': batch['beams'][:, g:g+1]}) for g in range(G)], 1)  # (B, G)


def flat(model, batch):
    "Re-encode vectorised: repeat every pool G times and score B*G single beams"
    B, G, S = batch['beams'].shape
    K, d = batch['cands'].shape[1:]
    fb = {'query': batch['query'][:, None].expand(B, G, d).reshape(B * G, d),
          'cands': batch['cands'][:, None].expand(B, G, K, d).reshape(B * G, K, d),
          'beams': batch['beams'].reshape(B * G, 1, S)}
    return model.log_prob(fb).view(B, G)


def once(model, batch): return model.log_prob(batch)


def timeit(fn, model, batch, reps, backward, dev):
    def run():
        if backward:
            fn(model, batch).sum().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(): fn(model, batch)
        if dev.type == 'cuda': torch.cuda.synchronize()
    run()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    return min(ts) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--B', type=int, default=32)
    ap.add_argument('--G', type=int, default=5)
    ap.add_argument('--S', type=int, nargs='+', default=[2, 3])
    ap.add_argument('--K', type=int, nargs='+', default=[32, 64, 128])
    ap.add_argument('--d_in', type=int, default=768)
    ap.add_argument('--d_model', type=int, default=256)
    ap.add_argument('--n_layers', type=int, default=3)
    ap.add_argument('--version', default='v2')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--device', default='auto')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch CPU threads (0 = torch default); 1 gives stable numbers on a shared machine')
    ap.add_argument('--no_backward', action='store_true', help='time the forward pass only')
    a = ap.parse_args()
    dev = get_device(a.device)
    if a.threads > 0: torch.set_num_threads(a.threads)
    set_seed(0)
    model = PointerSelector(ModelConfig(version=a.version, d_in=a.d_in, d_model=a.d_model, n_layers=a.n_layers)).to(dev)
    print(f'PointerSelector {a.version}: d_in {a.d_in}, D {a.d_model}, layers {a.n_layers if a.version == "v2" else 0}, '
          f'{model.n_params:,} params | B {a.B}, G {a.G} | device {dev}, torch threads {torch.get_num_threads()}, reps {a.reps}')
    modes = [('fwd', False)] + ([] if a.no_backward else [('fwd+bwd', True)])
    hdr = f"{'K':>4} {'S':>2} {'pass':>8} | {'once ms':>8} {'per-beam ms':>11} {'speed-up':>8} | {'flat ms':>8} {'speed-up':>8} | {'max |Δ|':>8}"
    print(hdr); print('-' * len(hdr))
    for K in a.K:
        for S in a.S:
            g = torch.Generator().manual_seed(K * 10 + S)
            beams = torch.stack([torch.randperm(K, generator=g)[:S] for _ in range(a.B * a.G)]).view(a.B, a.G, S)
            batch = {'query': torch.randn(a.B, a.d_in, generator=g).to(dev),
                     'cands': torch.randn(a.B, K, a.d_in, generator=g).to(dev), 'beams': beams.to(dev)}
            model.eval()
            with torch.no_grad():
                ref = once(model, batch)
                diff = max((per_beam(model, batch) - ref).abs().max().item(), (flat(model, batch) - ref).abs().max().item())
            for name, bwd in modes:
                model.train(bwd)
                t1 = timeit(once, model, batch, a.reps, bwd, dev)
                t2 = timeit(per_beam, model, batch, a.reps, bwd, dev)
                t3 = timeit(flat, model, batch, a.reps, bwd, dev)
                print(f'{K:>4} {S:>2} {name:>8} | {t1:8.1f} {t2:11.1f} {t2 / t1:7.2f}x | {t3:8.1f} {t3 / t1:7.2f}x | {diff:8.1e}')


if __name__ == '__main__': main()
