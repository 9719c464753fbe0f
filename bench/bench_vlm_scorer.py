"""Benchmark: what the real-VLM scorer costs during beam search, naive vs each optimisation and all together.

    python bench/bench_vlm_scorer.py                                   # CPU, a Qwen2.5-VL-3B-shaped model scaled down, shots 1-4
    python bench/bench_vlm_scorer.py --n_query 1 --shots 2             # a quick look
    python bench/bench_vlm_scorer.py --device cuda --config 3b         # Qwen2.5-VL-3B's published sizes in bf16

Beam search (`lever_plus.beams.beam_search`, K candidates, `--beam_width` beams, shots 1-4) for a fixed set of
queries of the tiny VQA set (`lever_plus.testing.tiny_vqa`), scored by `HFVLMScorer` on a random-init
Qwen2.5-VL. Random weights cost the same arithmetic as trained ones, so the FLOPs, tokens and times are a real
model's; only the scores are meaningless (the beams must still be the same in every setting: checked).

Configs: `3b` has Qwen2.5-VL-3B's sizes (text: 36 layers, width 2048, MLP 11008, 16 heads / 2 KV heads; vision:
32 blocks, width 1280, MLP 3420, 16 heads, 2×2 patch merger) and 448×448 images (256 image tokens each); `cpu`
divides every width by 16 and every depth by 6 (the same layer/width ratios, so the same split of FLOPs between
vision tower and language model per image) with 224×224 images (64 image tokens). Text: the tiny tokenizer
(about 15 tokens per example).

Settings: naive (prompts in the given order, every image of every prompt through the vision tower, every prompt
from scratch); bucket (batches of similar length); image cache (each image's vision features once, LRU);
shared prefix (a beam's shots run once, its extensions continue from the KV cache); all three.

Reported per beam-searched query: language-model token positions (padding included), vision-tower image
encodings, FLOPs (PyTorch's `FlopCounterMode`, in a second pass; on a CPU attention runs `eager` so the counter
sees its matmuls), wall time (the first pass) and peak memory (CUDA: `max_memory_allocated`; CPU: the peak RSS of
the process, model included). Each (shots, setting) runs in its own process.
"""
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path
import torch

SETTINGS = {'naive': dict(bucket=False, image_cache_mib=0, share_prefix=False),
            'bucket': dict(bucket=True, image_cache_mib=0, share_prefix=False),
            'image cache': dict(bucket=False, image_cache_mib=4096, share_prefix=False),
            'shared prefix': dict(bucket=False, image_cache_mib=0, share_prefix=True),
            'all': dict(bucket=True, image_cache_mib=4096, share_prefix=True)}
SIZES = {  # Qwen2.5-VL-3B (config.json of Qwen/Qwen2.5-VL-3B-Instruct) and the same shape scaled down for a CPU
    '3b': dict(text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                         rope_scaling={'type': 'mrope', 'mrope_section': [16, 24, 24]}),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]), image_size=448),
    'cpu': dict(text=dict(hidden_size=128, intermediate_size=688, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1,
                          rope_scaling={'type': 'mrope', 'mrope_section': [8, 12, 12]}),
                vision=dict(depth=5, hidden_size=80, intermediate_size=214, num_heads=1, out_hidden_size=128, window_size=112,
                            fullatt_block_indexes=[2, 4]), image_size=224),
}

def build(config:str, device:str, dtype, image_size:int):
    "A random-init Qwen2.5-VL of `config`'s sizes and its processor (tiny tokenizer, images resized to image_size²)"
    import transformers
    from lever_plus.testing import tiny_tokenizer
    from lever_plus.vlm import _images_only
    tok = tiny_tokenizer(special=('<pad>', '<s>', '</s>', '<|vision_start|>', '<|vision_end|>'), image_token='<|image_pad|>', max_len=1 << 16)
    ip = transformers.Qwen2VLImageProcessorPil(min_pixels=image_size ** 2, max_pixels=image_size ** 2, patch_size=14, merge_size=2, temporal_patch_size=2)
    proc = _images_only(transformers.Qwen2_5_VLProcessor)(image_processor=ip, tokenizer=tok, video_processor=None)
    s, ids = SIZES[config], {t: tok.convert_tokens_to_ids(t) for t in ('<|image_pad|>', '<|vision_start|>', '<|vision_end|>')}
    cfg = transformers.Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), max_position_embeddings=1 << 16, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, **s['text']),
        vision_config=dict(in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, **s['vision']),
        image_token_id=ids['<|image_pad|>'], vision_start_token_id=ids['<|vision_start|>'], vision_end_token_id=ids['<|vision_end|>'],
        video_token_id=tok.pad_token_id)
    cfg._attn_implementation = 'eager' if device == 'cpu' else 'sdpa'
    torch.manual_seed(0)
    with torch.device(device): model = transformers.Qwen2_5_VLForConditionalGeneration(cfg).to(dtype).eval()
    return model, proc

def one(a):
    "One (shots, setting) run in this process: a JSON line of its numbers and beams"
    from torch.utils.flop_counter import FlopCounterMode
    from lever_plus.testing import tiny_vqa
    from lever_plus.real import read_vqa
    from lever_plus.vlm import HFVLMScorer
    from lever_plus.beams import beam_search
    torch.set_num_threads(a.threads)
    files = tiny_vqa(Path(a.work)/'vqa', n={'train2014': a.n_pool, 'val2014': a.n_query})
    pool, queries = read_vqa(*files['train2014']), read_vqa(*files['val2014'])
    model, proc = build(a.config, a.device, {'bf16': torch.bfloat16, 'fp32': torch.float32}[a.dtype], a.image_size or SIZES[a.config]['image_size'])
    g = torch.Generator().manual_seed(0)
    q = torch.arange(a.n_query)
    cands = torch.stack([torch.randperm(len(pool), generator=g)[:a.K] for _ in q])  # (n, K)
    def run(count):
        sc = HFVLMScorer(model, queries, pool, processor=proc, batch_size=a.batch_size, **SETTINGS[a.setting])
        if a.device == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with FlopCounterMode(display=False) if count else torch.inference_mode() as fc:
            beams, _ = beam_search(sc, q, cands, a.shot, a.beam_width)
        if a.device == 'cuda': torch.cuda.synchronize()
        return sc, beams, time.perf_counter() - t, fc.get_total_flops() if count else None
    sc, beams, secs, _ = run(False)
    peak = torch.cuda.max_memory_allocated() if a.device == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    flops = run(True)[3] if a.flops else None
    print(json.dumps(dict(stats=sc.stats, secs=secs, flops=flops, peak=peak, beams=beams.tolist())))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--config', choices=list(SIZES), default='cpu', help="model sizes: 'cpu' (scaled down) or '3b' (Qwen2.5-VL-3B)")
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    p.add_argument('--dtype', choices=['fp32', 'bf16'], default=None, help='default: fp32 on a CPU, bf16 on a GPU')
    p.add_argument('--image_size', type=int, default=None, help="image side in pixels (default: the config's)")
    p.add_argument('--K', type=int, default=64, help='candidates per query')
    p.add_argument('--beam_width', type=int, default=5, help='beams kept per query')
    p.add_argument('--shots', type=int, nargs='+', default=[1, 2, 3, 4], help='shot numbers')
    p.add_argument('--n_query', type=int, default=2, help='beam-searched queries')
    p.add_argument('--n_pool', type=int, default=80, help='pool items (at least K)')
    p.add_argument('--batch_size', type=int, default=16, help='prompts per VLM forward pass')
    p.add_argument('--settings', nargs='+', default=list(SETTINGS), help=f'of: {", ".join(SETTINGS)}')
    p.add_argument('--no_flops', dest='flops', action='store_false', help='skip the FLOP-counting pass')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--json', default=None, help='also write the rows to this file')
    p.add_argument('--_one', nargs=2, metavar=('SHOT', 'SETTING'), help=argparse.SUPPRESS)
    p.add_argument('--_work', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.dtype = a.dtype or ('bf16' if a.device.startswith('cuda') else 'fp32')
    if a._one: a.shot, a.setting, a.work = int(a._one[0]), a._one[1], a._work; return one(a)
    work, rows = tempfile.mkdtemp(), []
    print(f'config {a.config}, {a.device} {a.dtype}, K {a.K}, {a.beam_width} beams, {a.n_query} queries, batch {a.batch_size}, {a.threads} thread(s)')
    print('| shots | setting | LM positions / query | image encodings / query | GFLOP / query | wall s / query | peak MiB | FLOPs ÷ | time ÷ | beams as naive |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for S in a.shots:
        ref = None
        for name in a.settings:
            argv_ = [sys.executable, __file__, '--_one', str(S), name, '--_work', work, '--config', a.config, '--device', a.device,
                     '--dtype', a.dtype, '--K', str(a.K), '--beam_width', str(a.beam_width), '--n_query', str(a.n_query),
                     '--n_pool', str(a.n_pool), '--batch_size', str(a.batch_size), '--threads', str(a.threads)]
            argv_ += (['--image_size', str(a.image_size)] if a.image_size else []) + ([] if a.flops else ['--no_flops'])
            r = json.loads(subprocess.run(argv_, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            ref = ref or r
            n, st = a.n_query, r['stats']
            row = dict(shots=S, setting=name, lm_positions=st['forward_tokens'] / n, image_encodings=st['images_encoded'] / n,
                       gflop=r['flops'] / n / 1e9 if r['flops'] else None, secs=r['secs'] / n, peak_mib=r['peak'] / 2 ** 20,
                       flop_ratio=ref['flops'] / r['flops'] if r['flops'] else None, time_ratio=ref['secs'] / r['secs'], same_beams=r['beams'] == ref['beams'])
            rows.append(row)
            fmt = lambda x, f: '—' if x is None else format(x, f)
            print(f"| {S} | {name} | {row['lm_positions']:.0f} | {row['image_encodings']:.1f} | {fmt(row['gflop'], '.1f')} | {row['secs']:.2f} | "
                  f"{row['peak_mib']:.0f} | {fmt(row['flop_ratio'], '.2f')} | {row['time_ratio']:.2f} | {'yes' if row['same_beams'] else 'NO'} |", flush=True)
    if a.json: Path(a.json).write_text(json.dumps(dict(args={k: v for k, v in vars(a).items() if not k.startswith('_')}, rows=rows), indent=1))

if __name__ == '__main__': main()
