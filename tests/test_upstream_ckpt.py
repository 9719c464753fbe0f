"""Upstream Lever-Plus checkpoints through the commands: post-training (`lever_plus_grpo --sft_ckpt FILE`), evaluation
without a scorer, SFT of the v2_upstream architecture, write-back in upstream's format, and bad files (exit 2, one line).

The files under tests/fixtures/upstream/ were written by upstream's own code (see their README.md)."""
import json, sys
from pathlib import Path
import pytest
import torch
from lever_plus.core import ModelConfig
from lever_plus.model import load_selector
from lever_plus.upstream import UpstreamSelector, load_upstream_checkpoint, read_upstream_state, save_upstream_checkpoint
from lever_plus.cli import grpo, evaluate, grpo_main
from conftest import run_script

FIX = Path(__file__).resolve().parent/'fixtures'/'upstream'
DATA = ['--beam_data', FIX/'beams_shot2.json', '--embeddings', FIX/'emb.pt']
SMALL = ['--batch_size', 16, '--no_progress']  # 40 queries: 36 train (3 batches), 4 validation


def _batch():
    "Four queries of emb.pt with 64 candidates each and two 2-shot beams"
    emb = torch.load(FIX/'emb.pt', weights_only=True)
    return dict(query=emb[:4], cands=emb[4:260].view(4, 64, -1), beams=torch.tensor([[[0, 1], [5, 2]]] * 4))


@pytest.fixture(scope='module')
def post_trained(tmp_path_factory) -> Path:
    "The run folder of `lever_plus_grpo` (1 RCE + 1 GRPO epoch) on upstream's gated SFT checkpoint and data"
    out = tmp_path_factory.mktemp('up')/'v3'
    r = run_script('lever_plus_grpo', ['--sft_ckpt', FIX/'v2_gated.ckpt', *DATA, '--rce_epochs', 1, '--grpo_epochs', 1,
                                       '--output_dir', out, *SMALL])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_grpo_from_lightning_ckpt(post_trained):
    assert (post_trained/'best'/'model.safetensors').is_file() and (post_trained/'best'/'config.json').is_file()
    model = json.loads((post_trained/'config.json').read_text())['model']
    assert (model['version'], model['d_in'], model['d_model'], model['n_layers'], model['n_heads'], model['query_gate']) == \
           ('v2_upstream', 512, 256, 1, 1, True)
    assert (model['dropout'], model['attn_dropout']) == (0.5, 0.1)  # upstream's training config
    assert [json.loads(l)['stage'] for l in (post_trained/'metrics.jsonl').read_text().splitlines() if '"kind": "epoch"' in l] == ['rce/all', 'grpo/top3']
    best, sft = load_selector(post_trained), load_upstream_checkpoint(FIX/'v2_gated.ckpt')
    assert isinstance(best, UpstreamSelector)
    assert not torch.equal(best.state_dict()['query_proj.weight'], sft.state_dict()['query_proj.weight'])  # it trained


def test_post_trained_model_back_in_upstream_format(post_trained, tmp_path):
    "The post-trained selector written as upstream's post-training .pt: the same keys as upstream's file, the same outputs"
    best = load_selector(post_trained)
    f = save_upstream_checkpoint(best, tmp_path/'v3_grpo_epoch2.pt', epoch=1, phase='grpo', kl_beta=0.1, metrics={'val_loss': 1.0})
    mine, theirs = torch.load(f, weights_only=True), torch.load(FIX/'v3_grpo_epoch1.pt', weights_only=True)
    assert sorted(mine) == sorted(theirs) and list(mine['model_state_dict']) == list(theirs['model_state_dict'])
    back, b = load_selector(f), _batch()
    with torch.no_grad(): assert torch.equal(back.log_prob(b, per_step=True), best.log_prob(b, per_step=True))


def test_eval_of_the_result_without_a_scorer(post_trained, tmp_path):
    r = run_script('lever_plus_eval', ['--ckpt', post_trained, '--ckpt', FIX/'v2_gated.ckpt', *DATA, '--scorer', 'none',
                                       '--n_boot', 50, '--out', tmp_path/'eval'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert '| v3-offline |' in r.stdout and '| upstream v2_gated.ckpt |' in r.stdout and 'picks in the top beam' in r.stdout
    rows = {x['method']: x for x in json.loads((tmp_path/'eval'/'eval.json').read_text())['shots']['2']}
    assert rows['beam oracle']['overlap'] == 1.0 and rows['v3-offline']['n'] == 40
    assert sorted(p.name for p in (tmp_path/'eval').iterdir()) == ['eval.json', 'eval.md']


def test_grpo_static_post_training_pt_with_overrides(tmp_path):
    "The static layout, through the heads / dropout flags; GRPO only"
    res = grpo_main(['--sft_ckpt', str(FIX/'v2_static.ckpt'), *map(str, DATA), '--rce_epochs', '0', '--grpo_epochs', '1',
                     '--output_dir', str(tmp_path/'run'), '--upstream_n_heads', '2', '--upstream_dropout', '0.2', *map(str, SMALL)])
    assert res['best_epoch'] == 1
    best = load_selector(tmp_path/'run')
    assert (best.cfg.n_heads, best.cfg.dropout, best.cfg.attn_dropout, best.cfg.query_gate) == (2, 0.2, 0.1, False)
    assert 'query_update_gate.weight' not in best.state_dict()


def test_sft_v2_upstream_then_grpo(tmp_path):
    "`lever_plus_sft --model.version v2_upstream` trains the architecture from scratch; its folder post-trains"
    r = run_script('lever_plus_sft', ['--model.version', 'v2_upstream', '--model.d_model', 32, '--model.n_layers', 2, '--sft.epochs', 2,
                                      *DATA, '--output_dir', tmp_path/'sft', *SMALL])
    assert r.returncode == 0, r.stderr[-3000:]
    sft = load_selector(tmp_path/'sft')
    assert isinstance(sft, UpstreamSelector) and (sft.cfg.d_in, sft.cfg.n_layers, len(sft.cross_attn_layers)) == (512, 2, 2)
    res = grpo_main(['--sft_ckpt', str(tmp_path/'sft'/'best'), *map(str, DATA), '--rce_epochs', '1', '--grpo_epochs', '0',
                     '--output_dir', str(tmp_path/'v3'), *map(str, SMALL)])
    assert res['best_epoch'] == 1 and load_selector(tmp_path/'v3').cfg == sft.cfg


def _bad_files(d:Path) -> dict:
    good = (FIX/'v2_gated.ckpt').read_bytes()
    (d/'cut.ckpt').write_bytes(good[:len(good) // 3])
    (d/'empty.ckpt').write_bytes(b'')
    torch.save({'state_dict': {'lever_lm.lstm.weight_ih_l0': torch.zeros(4, 2), 'lever_lm.sen_model.w': torch.zeros(1)}, 'epoch': 3}, d/'lstm.ckpt')
    sd = read_upstream_state(FIX/'v3_grpo_epoch1.pt')
    torch.save({'epoch': 0, 'phase': 'grpo', 'model_state_dict': {**sd, 'decoder_gru.weight_hh_l0': torch.zeros(3)}, 'kl_beta': 0.1,
                'metrics': {}}, d/'v4_2.pt')
    return {'cut.ckpt': 'torch.load cannot read it (RuntimeError: PytorchStreamReader failed reading zip archive',
            'empty.ckpt': 'empty file (0 bytes)',
            'lstm.ckpt': "a PyTorch Lightning checkpoint, but not of upstream Lever-Plus's pointer selector: no state_dict key starts with "
                         "'lever_lm.pointer_selector.' (found lever_lm.lstm.weight_ih_l0, lever_lm.sen_model.w)",
            'v4_2.pt': "not the layout of upstream Lever-Plus's PointerSelectorV2 — expected input_proj.weight"}


@pytest.mark.parametrize('name', ['cut.ckpt', 'empty.ckpt', 'lstm.ckpt', 'v4_2.pt'])
def test_bad_upstream_files_exit_2_with_one_line(name, tmp_path, monkeypatch, capsys):
    frag = _bad_files(tmp_path)[name]
    for entry, argv in ((grpo, ['--sft_ckpt', tmp_path/name, *DATA, '--output_dir', tmp_path/'out', *SMALL]),
                        (evaluate, ['--ckpt', tmp_path/name, *DATA, '--scorer', 'none'])):
        monkeypatch.setattr(sys, 'argv', [entry.__name__, *map(str, argv)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e: entry()
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f'error: {tmp_path/name}: ') and frag in err, err
        assert err.count('\n') == 1 and 'Traceback' not in err, err
        assert not (tmp_path/'out').exists()  # refused before anything is written
    if name == 'v4_2.pt': assert 'unexpected decoder_gru.weight_hh_l0' in err


def test_bad_file_console_script(tmp_path):
    "The installed script in a subprocess: exit status 2, one `error:` line"
    _bad_files(tmp_path)
    r = run_script('lever_plus_grpo', ['--sft_ckpt', tmp_path/'cut.ckpt', *DATA, '--output_dir', tmp_path/'out', *SMALL])
    assert r.returncode == 2 and r.stderr.startswith(f'error: {tmp_path/"cut.ckpt"}: torch.load cannot read it') and r.stderr.count('\n') == 1, r.stderr


def test_heads_flag_must_divide_and_folders_refuse_it(post_trained, tmp_path, monkeypatch, capsys):
    for argv, frag in (([FIX/'v2_gated.ckpt', '--upstream_n_heads', 3], 'divisible by model.n_heads (3)'),
                       ([post_trained, '--upstream_n_heads', 2], 'n_heads=2 given, but its config.json records n_heads=1')):
        monkeypatch.setattr(sys, 'argv', ['lever_plus_grpo', '--sft_ckpt', *map(str, argv), *map(str, DATA), '--output_dir', str(tmp_path/'o'), '--no_progress'])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e: grpo()
        err = capsys.readouterr().err
        assert e.value.code == 2 and frag in err and err.count('\n') == 1, err


def test_eval_heads_flag(post_trained, monkeypatch):
    "`lever_plus_eval --upstream_n_heads` loads an upstream file with that many heads; a folder beside it keeps its own"
    from lever_plus.cli import eval_main
    import lever_plus.evaluate as ev
    heads, load = {}, ev.load_selector
    monkeypatch.setattr(ev, 'load_selector', lambda p, *a, **kw: heads.setdefault(Path(p).name, load(p, *a, **kw)))
    res = eval_main([*map(str, ['--ckpt', FIX/'v2_gated.ckpt', '--ckpt', post_trained, *DATA]), '--scorer', 'none', '--n_boot', '20', '--upstream_n_heads', '4'])
    assert [r['method'] for r in res['shots'][2]][-3:] == ['upstream v2_gated.ckpt', 'v3-offline', 'beam oracle']
    assert (heads['v2_gated.ckpt'].cfg.n_heads, heads['best'].cfg.n_heads) == (4, 1)
    with pytest.raises(Exception, match='divisible by model.n_heads'):
        eval_main([*map(str, ['--ckpt', FIX/'v2_gated.ckpt', *DATA]), '--scorer', 'none', '--upstream_n_heads', '3'])
