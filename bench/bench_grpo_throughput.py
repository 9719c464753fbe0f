"""Benchmark: GRPO training throughput (queries/s) and peak memory of one optimisation step.

    python bench/bench_grpo_throughput.py                          # K 32 64 128, S 2 3, d_in 768, G 5, B 32, CPU, 1 thread
    python bench/bench_grpo_throughput.py --device cuda --steps 50  # on a GPU
    python bench/bench_grpo_throughput.py --threads 0              # torch's default thread count
    python bench/bench_grpo_throughput.py --versions v2 v2_upstream --K 64  # this package's v2 against upstream's, same sizes

--versions chooses the architectures (default v2): 'v2' is `PointerSelector` (every token of [query; candidates]
attends to all the others in each layer), 'v2_upstream' is `UpstreamSelector`, upstream Lever-Plus's own v2 (only the
query attends to the candidates; the gated query-state update), both at --d_model / --n_layers.

One step = what `lever_plus.train.post_train` does per batch in a GRPO epoch: `grpo_step` (teacher-forced
log-probs of the B·G beams with each pool encoded once, rewards, group advantages, PPO-clip + k3 KL) →
backward → grad-norm clip → AdamW step. π_old / π_ref log-probs are inputs (the trainer caches them once per
epoch), the policy runs in eval mode (dropout off, as in training). Data loading is not timed.

Time: median over --steps steps after --warmup steps (the machine may be shared: the best step is printed
too). Memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU each configuration runs in a fresh process,
and the step's memory is its peak resident set (ru_maxrss) minus the resident set just before the first step
(model, batch and cached log-probs allocated; AdamW's moments and the activations not yet).
"""
import argparse, itertools, multiprocessing as mp, resource, statistics, time

def rss_mb()->float:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * resource.getpagesize() / 2**20

def measure(a:dict)->dict:
    import torch
    if a['threads']: torch.set_num_threads(a['threads'])
    from lever_plus.core import ModelConfig, TrainConfig, DataConfig, set_seed
    from lever_plus.model import fresh_selector
    from lever_plus.train import grpo_step
    set_seed(0)
    dev = torch.device(a['device'])
    B, G, S, K, d = a['B'], a['G'], a['S'], a['K'], a['d_in']
    cfg = TrainConfig(model=ModelConfig(version=a['version'], d_in=d, d_model=a['d_model'], n_layers=a['n_layers']), data=DataConfig(K=K, shot_num=S, batch_size=B))
    policy = fresh_selector(cfg.model).to(dev).eval()  # dropout off, as in the GRPO stage
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = dict(query=torch.randn(B, d, generator=g), cands=torch.randn(B, K, d, generator=g),
                 beams=torch.rand(B * G, K, generator=g).argsort(-1)[:, :S].view(B, G, S),  # distinct positions per beam
                 scores=torch.rand(B, G, generator=g).sort(-1, descending=True).values, beam_mask=torch.ones(B, G, dtype=torch.bool),
                 cand_ids=torch.arange(K).expand(B, K), query_ids=torch.arange(B))
    batch = {k: v.to(dev) for k, v in batch.items()}
    with torch.no_grad(): old = policy.log_prob(batch); ref = old.clone()
    sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)
    def step():
        loss, _ = grpo_step(policy, batch, old, ref, 0.1, cfg)
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0); opt.step()
    sync()
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    base = rss_mb()  # model, batch and cached log-probs allocated; optimiser state and activations not yet
    for _ in range(a['warmup']): step()
    sync()
    ts = []
    for _ in range(a['steps']):
        t = time.perf_counter(); step(); sync(); ts.append(time.perf_counter() - t)
    if dev.type == 'cuda': mem = torch.cuda.max_memory_allocated() / 2**20
    else: mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return dict(version=a['version'], K=K, S=S, t_med=statistics.median(ts), t_min=min(ts), mem=mem, peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                n_params=sum(p.numel() for p in policy.parameters()), threads=torch.get_num_threads())

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--K', type=int, nargs='+', default=[32, 64, 128], help='candidates per query')
    p.add_argument('--shots', type=int, nargs='+', default=[2, 3], help='shots S')
    p.add_argument('--d_in', type=int, default=768, help='input embedding size (img + txt)')
    p.add_argument('--G', type=int, default=5, help='beams per query')
    p.add_argument('--B', type=int, default=32, help='queries per batch')
    p.add_argument('--d_model', type=int, default=256)
    p.add_argument('--n_layers', type=int, default=3)
    p.add_argument('--versions', nargs='+', default=['v2'], help="architectures: 'v2' (this package's) and / or 'v2_upstream' (upstream's)")
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1, help='torch threads (0 = torch default)')
    a = vars(p.parse_args())
    import torch
    dev = a['device']
    print(f"GRPO step throughput: torch {torch.__version__}, device {dev}"
          f"{' (' + torch.cuda.get_device_name() + ')' if dev.startswith('cuda') else ''}, threads {a['threads'] or 'default'}")
    print(f"models {', '.join(a['versions'])}: d_in {a['d_in']}, d_model {a['d_model']}, {a['n_layers']} attention layers; batch B {a['B']} queries × G {a['G']} beams\n")
    mem_col = 'peak GPU MiB' if dev.startswith('cuda') else 'step RSS MiB'
    hdr = f"{'version':>11} {'K':>4} {'S':>2} {'ms/step (med)':>13} {'ms/step (best)':>14} {'queries/s':>9} {'(best) q/s':>11} {mem_col:>12} {'peak RSS MiB':>12}"
    print(hdr); print('-' * len(hdr))
    ctx = mp.get_context('spawn')
    n_params = {}
    for K, S, v in itertools.product(a['K'], a['shots'], a['versions']):
        with ctx.Pool(1) as pool: r = pool.apply(measure, (dict(a, K=K, S=S, version=v),))  # a fresh process per configuration
        qps, best = a['B'] / r['t_med'], a['B'] / r['t_min']
        n_params[v] = r['n_params']
        print(f"{v:>11} {K:4d} {S:2d} {1e3 * r['t_med']:13.1f} {1e3 * r['t_min']:14.1f} {qps:9.0f} {best:11.0f} {r['mem']:12.0f} {r['peak_rss']:12.0f}", flush=True)
    print('\n' + ', '.join(f'{v}: {n:,} parameters' for v, n in n_params.items()) +
          '. queries/s = B / step time (median; best = the fastest step, the least disturbed by other load).')

if __name__ == '__main__': main()
