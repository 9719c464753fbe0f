"""Parity fixtures made by upstream Lever-Plus's own `PointerSelectorV2`: seeded random weights, inputs and its outputs.

    M=/work/.mirror/yunsoft2019+Lever-Plus/repo   # or a clone of github.com/yunsoft2019/Lever-Plus
    for c in c228df3 9b68708 9f0f989; do
        mkdir -p /tmp/up_$c && git -C $M archive $c lever_lm/models/v2/pointer_selector_v2.py | tar -x -C /tmp/up_$c
    done
    python tools/make_upstream_parity.py /tmp/up_c228df3 /tmp/up_9b68708 /tmp/up_9f0f989

Each argument is an upstream checkout; only `lever_lm/models/v2/pointer_selector_v2.py` is read (it imports torch alone), loaded
by its path. The flavour of a checkout is read off its class: 'gated' (a `query_update_gate`; HEAD c228df3), 'static' (layer lists,
no gate; 9b68708) or 'single' (one layer named `cross_attn` / `attn_norm`; 9f0f989). For every case of that flavour the class is
built with seeded random weights (every parameter perturbed, so biases and LayerNorms matter) and two files go to --out:

  CASE.pt     the class's state dict, saved as upstream saves one (a bare state-dict .pt)
  CASE_io.pt  query (B, d_in), cands (B, K, d_in), beams (B, G, S) positions into the K candidates; upstream's outputs in eval
              mode: step_log_probs (B, G, S) = log_softmax of its forward logits at the teacher-forced picks, greedy (B, S) = its
              predict(); meta: flavour, sizes and num_heads (what the tensors do not record)

Upstream's code runs only here, never in lever_plus or its tests (they read the files).
"""
import argparse, contextlib, importlib.util, inspect, io, json, sys
from pathlib import Path
import torch

REL = 'lever_lm/models/v2/pointer_selector_v2.py'
# flavour → cases (name, d_in, hidden, layers, heads): layer counts 1-3, 768-d inputs, d_in == hidden (identity input projection)
CASES = {'gated': [('gated_L2', 48, 32, 2, 1), ('gated_L3_d768_h2', 768, 16, 3, 2), ('gated_identity', 32, 32, 1, 1)],
         'static': [('static_L2', 48, 32, 2, 1), ('static_L3_d768', 768, 16, 3, 1)],
         'single': [('single_layer', 48, 32, 1, 1), ('single_identity', 24, 24, 1, 2)]}
B, G, S, K = 3, 2, 3, 12


def load_class(checkout:Path):
    "Upstream's PointerSelectorV2 class from a checkout, loaded by file path (no package imports)"
    f = Path(checkout)/REL
    if not f.is_file(): sys.exit(f'{checkout}: no {REL} (give an upstream Lever-Plus checkout)')
    spec = importlib.util.spec_from_file_location(f'upstream_v2_{abs(hash(str(f)))}', f)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod.PointerSelectorV2


def build(cls, d_in, hidden, layers, heads):
    kw = dict(d_model=d_in, hidden_dim=hidden, K=K, shot_num=S, num_heads=heads, dropout=0.1, attn_dropout=0.1, label_smoothing=0.0)
    if 'num_layers' in inspect.signature(cls.__init__).parameters: kw['num_layers'] = layers
    elif layers != 1: raise ValueError('a single-layer class')
    with contextlib.redirect_stdout(io.StringIO()): return cls(**kw)  # upstream prints a banner


def flavour(cls)->str:
    keys = set(build(cls, 8, 8, 1, 1).state_dict())
    if any(k.startswith('query_update_gate.') for k in keys): return 'gated'
    return 'static' if any(k.startswith('cross_attn_layers.') for k in keys) else 'single'


@torch.no_grad()
def make_case(cls, name, d_in, hidden, layers, heads, seed, fl):
    torch.manual_seed(seed)
    m = build(cls, d_in, hidden, layers, heads)
    for p in m.parameters(): p.add_(0.1 * torch.randn_like(p))
    m.eval()
    q = torch.nn.functional.normalize(torch.randn(B, d_in), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(B, K, d_in), dim=-1)
    beams = torch.rand(B * G, K).argsort(-1)[:, :S].view(B, G, S)  # distinct positions within a beam
    lps = []
    for g in range(G):
        logits = m(q, c, labels=beams[:, g], return_loss=False)['logits']  # (B, S, K)
        lps.append(torch.log_softmax(logits, -1).gather(-1, beams[:, g, :, None])[..., 0])  # (B, S)
    greedy = m.predict(q, c)[0]  # (B, S)
    meta = dict(flavour=fl, d_in=d_in, hidden=hidden, num_layers=layers, num_heads=heads, K=K, shot_num=S, seed=seed)
    return m.state_dict(), dict(query=q, cands=c, beams=beams, step_log_probs=torch.stack(lps, 1), greedy=greedy, meta=meta)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkouts', nargs='+', help='upstream Lever-Plus checkouts (one per flavour)')
    p.add_argument('--out', default='tests/fixtures/upstream/parity')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    done = {}
    for ck in a.checkouts:
        cls = load_class(ck)
        fl = flavour(cls)
        for i, (name, d_in, hidden, layers, heads) in enumerate(CASES[fl]):
            sd, io_ = make_case(cls, name, d_in, hidden, layers, heads, a.seed + 100 * len(done) + i, fl)
            torch.save(sd, out/f'{name}.pt'); torch.save(io_, out/f'{name}_io.pt')
            done[name] = dict(io_['meta'], checkout=str(ck), keys=len(sd))
            print(f'{name}: {fl}, d_in {d_in} → {hidden}, {layers} layer(s), {heads} head(s), {len(sd)} tensors')
    (out/'cases.json').write_text(json.dumps({k: {x: v for x, v in d.items() if x != 'checkout'} for k, d in done.items()}, indent=1) + '\n')


if __name__ == '__main__': main()
