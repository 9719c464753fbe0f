"RL format: make_data writes RL-format groups with contrast; training reads them like beam files"
import json
from lever_plus.beams import make_data
from lever_plus.data import read_beam_data, load_datasets
from lever_plus.core import TrainConfig, DataConfig, ModelConfig, SFTConfig, CurriculumConfig
from lever_plus.sft import run_sft
from lever_plus.train import run_post_train, read_metrics


def test_rl_format_groups_train(tmp_path):
    d = tmp_path/'data'
    s = make_data(d, seed=0, K=16, n_pool=300, n_train=32, n_val=8, n_test=8, progress=False, rl=True)
    assert 'beams_train_rl.json' in s['files']
    raw = json.loads((d/'beams_train_rl.json').read_text())
    kinds = {c['gen_method'] for k, r in raw.items() if k != '_meta' for c in r['pointer_candidates']}
    assert kinds == {'beam', 'retrieval', 'sample', 'random'}
    recs = read_beam_data(d/'beams_train_rl.json')
    assert recs.format == 'rl' and all(len(r.sequences) > 5 for r in recs.values())
    spread = [max(r.scores) - min(r.scores) for r in recs.values()]
    beams = read_beam_data(d/'beams_train.json')
    beam_spread = [max(r.scores) - min(r.scores) for r in beams.values()]
    assert sum(spread) > 3 * sum(beam_spread)  # far more contrast than the 5 near-tied beams
    cfg = TrainConfig(model=ModelConfig(d_model=32, n_layers=1), sft=SFTConfig(epochs=1),
                      data=DataConfig(batch_size=16, n_beams=20), curriculum=CurriculumConfig(rce_epochs=0, grpo_epochs=1))
    run_sft(d/'beams_train.json', d, tmp_path/'sft', 'v2', cfg, d/'beams_val.json')
    r = run_post_train(tmp_path/'sft'/'best', d/'beams_train_rl.json', d, tmp_path/'v3', cfg, d/'beams_val.json', progress=False)
    steps = [x for x in read_metrics(tmp_path/'v3'/'metrics.jsonl') if x['kind'] == 'step']
    assert steps and all(x['frac_zero_std'] == 0 for x in steps) and r['history'][-1]['val_info'] > 0
