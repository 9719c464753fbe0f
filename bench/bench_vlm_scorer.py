"""Benchmark: what the real-VLM scorer processes during beam search, naive vs each optimisation.

    python bench/bench_vlm_scorer.py                       # tiny random-init LLaVA on CPU, K 8, 5 beams, shots 1-3
    python bench/bench_vlm_scorer.py --K 16 --shots 1 2 3 4 --n_train 24

Beam search over a tiny VQA set (`lever_plus.testing.tiny_vqa`, CLIP features from `tiny_clip`) with
`HFVLMScorer` on a random-init LLaVA (`tiny_vlm`), once per setting:

- naive: prompts in the given order, every image of every prompt through the vision tower;
- bucket: prompts batched by length (less padding);
- image cache: each image's vision features computed once (LRU);
- both.

Reported per beam-searched query: VLM forward positions (padding included), real tokens, vision-tower image
encodings, and wall time. The beams written must be the same in every setting (checked). Random weights cost
the same arithmetic as trained ones; the tiny model's *ratios* (image tokens per prompt, text per shot) are not
a real model's, so read the relative numbers, not the absolute ones.
"""
import argparse, json, tempfile, time
from pathlib import Path
import torch

SETTINGS = {'naive': dict(bucket=False, image_cache_mib=0), 'bucket': dict(bucket=True, image_cache_mib=0),
            'image cache': dict(bucket=False, image_cache_mib=256), 'both': dict(bucket=True, image_cache_mib=256)}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--K', type=int, default=8, help='candidates per query')
    p.add_argument('--beam_width', type=int, default=5, help='beams kept per query')
    p.add_argument('--shots', type=int, nargs='+', default=[1, 2, 3], help='shot numbers')
    p.add_argument('--n_train', type=int, default=12, help='beam-searched queries')
    p.add_argument('--batch_size', type=int, default=8, help='prompts per VLM forward pass')
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from lever_plus.testing import tiny_vqa, tiny_clip, tiny_vlm
    from lever_plus.clip import prepare_vqa
    from lever_plus.vlm import load_vlm, HFVLMScorer, make_real_data
    from lever_plus.real import load_items
    tmp = Path(tempfile.mkdtemp())
    files = tiny_vqa(tmp/'vqa', n={'train2014': 48, 'val2014': a.n_train + 2})
    d = tmp/'data'
    prepare_vqa(d, *files['train2014'], *files['val2014'], model=str(tiny_clip(tmp/'clip')), n_train=a.n_train, n_val=2, device='cpu', progress=False)
    model, proc = load_vlm(str(tiny_vlm(tmp/'vlm')), 'cpu')
    pool, queries = load_items(d)
    print(f'| shots | setting | forward positions / query | real tokens / query | image encodings / query | wall s / query | beams as naive |')
    print('|---|---|---|---|---|---|---|')
    for S in a.shots:
        ref = None
        for name, kw in SETTINGS.items():
            sc = HFVLMScorer(model, queries, pool, processor=proc, batch_size=a.batch_size, **kw)
            out = tmp/f'beams_{S}_{name.replace(" ", "_")}'
            t = time.perf_counter()
            make_real_data(d, out_dir=out, scorer=sc, splits=['train'], K=a.K, shot_num=S, beam_width=a.beam_width, progress=False)
            secs = time.perf_counter() - t
            beams = {q: r['id_list'] for q, r in json.loads((out/'beams_train.json').read_text()).items() if q != '_meta'}
            ref = beams if ref is None else ref
            st, n = sc.stats, a.n_train
            print(f"| {S} | {name} | {st['forward_tokens'] / n:.0f} | {st['real_tokens'] / n:.0f} | {st['images_encoded'] / n:.1f} | "
                  f"{secs / n:.3f} | {'yes' if beams == ref else 'NO'} |", flush=True)

if __name__ == '__main__': main()
