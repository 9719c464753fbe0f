"""Benchmark: achieved FLOP/s of the GRPO step against this machine's matmul FLOP/s.

    python bench/bench_flops.py                     # float32, CPU, 1 thread, K 32 64 128, S 2 3, d_in 768, B 32, G 5
    python bench/bench_flops.py --threads 2         # both the step and the matmul with 2 threads
    python bench/bench_flops.py --device cuda --dtype bfloat16

FLOPs of a step are counted analytically by `lever_plus.evaluate.selector_flops` (forward + backward of the
teacher-forced log-probs; 2 FLOPs per multiply-add; element-wise work not counted) and checked here against
`torch.utils.flop_counter.FlopCounterMode` on the same step (with the math attention kernel, whose products
the counter sees). The GRPO loss itself (a few element-wise ops on (B, G) tensors) and AdamW are not counted but
are in the timed step, as in training.

The reference is the best FLOP/s of a square torch matmul of the same dtype and thread count (sizes
--mm_sizes), and of a matmul the size of the model's largest product (the QKV projection of B·(1+K) tokens).
ratio = achieved / best square matmul: the fraction of this machine's dense-matmul speed the step reaches.
"""
import argparse, time
import torch

def best_time(fn, reps:int, sync)->float:
    fn(); sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    return min(ts)

def matmul_flops(n:int, m:int, k:int, dtype, dev, reps:int, sync)->float:
    a, b = torch.randn(n, k, dtype=dtype, device=dev), torch.randn(k, m, dtype=dtype, device=dev)
    return 2 * n * m * k / best_time(lambda: a @ b, reps, sync)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--K', type=int, nargs='+', default=[32, 64, 128])
    p.add_argument('--shots', type=int, nargs='+', default=[2, 3])
    p.add_argument('--d_in', type=int, default=768); p.add_argument('--G', type=int, default=5); p.add_argument('--B', type=int, default=32)
    p.add_argument('--d_model', type=int, default=256); p.add_argument('--n_layers', type=int, default=3)
    p.add_argument('--reps', type=int, default=10, help='timed repetitions (the best is kept: robust to a shared machine)')
    p.add_argument('--mm_sizes', type=int, nargs='+', default=[512, 1024, 2048], help='square matmul sizes of the reference')
    p.add_argument('--dtype', default='float32'); p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1, help='torch threads (0 = torch default)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    from torch.utils.flop_counter import FlopCounterMode
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from lever_plus.core import ModelConfig, TrainConfig, DataConfig, set_seed
    from lever_plus.model import PointerSelector
    from lever_plus.train import grpo_step
    from lever_plus.evaluate import selector_flops
    dev, dtype = torch.device(a.device), getattr(torch, a.dtype)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)
    set_seed(0)
    print(f'FLOP efficiency of the GRPO step: torch {torch.__version__}, {dev}, {a.dtype}, threads {torch.get_num_threads()}')
    peak = {n: matmul_flops(n, n, n, dtype, dev, a.reps, sync) for n in a.mm_sizes}
    best = max(peak.values())
    print('square matmul GFLOP/s: ' + ', '.join(f'{n}: {v / 1e9:.1f}' for n, v in peak.items()) + f'  → reference {best / 1e9:.1f} GFLOP/s\n')
    hdr = (f"{'K':>4} {'S':>2} {'GFLOP/step':>10} {'counter ok':>10} {'ms/step':>8} {'GFLOP/s':>8} {'ratio':>6} "
           f"{'QKV-size mm GFLOP/s':>19} {'ratio to it':>11}")
    print(hdr); print('-' * len(hdr))
    B, G = a.B, a.G
    for K in a.K:
        for S in a.shots:
            cfg = TrainConfig(model=ModelConfig(d_in=a.d_in, d_model=a.d_model, n_layers=a.n_layers), data=DataConfig(K=K, shot_num=S, batch_size=B))
            policy = PointerSelector(cfg.model).to(dev, dtype).eval()
            opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
            g = torch.Generator().manual_seed(0)
            batch = dict(query=torch.randn(B, a.d_in, generator=g), cands=torch.randn(B, K, a.d_in, generator=g),
                         beams=torch.rand(B * G, K, generator=g).argsort(-1)[:, :S].view(B, G, S),
                         scores=torch.rand(B, G, generator=g).sort(-1, descending=True).values, beam_mask=torch.ones(B, G, dtype=torch.bool))
            batch = {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) for k, v in batch.items()}
            with torch.no_grad(): old = policy.log_prob(batch); ref = old.clone()
            def step():
                loss, _ = grpo_step(policy, batch, old, ref, 0.1, cfg)
                opt.zero_grad(set_to_none=True); loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0); opt.step()
            flops = selector_flops(cfg.model, B, G, S, K, backward=True)
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc: step()
            ok = 'yes' if fc.get_total_flops() == flops else f'{fc.get_total_flops() / flops:.3f}×'
            t = best_time(step, a.reps, sync)
            qkv = matmul_flops(B * (1 + K), 3 * a.d_model, a.d_model, dtype, dev, a.reps, sync)
            ach = flops / t
            print(f"{K:4d} {S:2d} {flops / 1e9:10.3f} {ok:>10} {1e3 * t:8.1f} {ach / 1e9:8.1f} {ach / best:6.2f} {qkv / 1e9:19.1f} {ach / qkv:11.2f}", flush=True)
    again = {n: matmul_flops(n, n, n, dtype, dev, a.reps, sync) for n in a.mm_sizes}  # load may have changed: measure again
    print('\nsquare matmul GFLOP/s at the end: ' + ', '.join(f'{n}: {v / 1e9:.1f}' for n, v in again.items()) +
          (f'  (higher than at the start: ratios above are overestimates by up to {max(again.values()) / best:.2f}×)' if max(again.values()) > best else ''))
    print('ratio = achieved GFLOP/s of the step / best square-matmul GFLOP/s at the start (same dtype, same threads).')

if __name__ == '__main__': main()
