"Two torchrun processes (gloo, CPU) do what one process does: same weights (post-training, SFT), same files (beam data)"
import pytest, torch
from lever_plus.testing import run_ddp_check, sft_ddp_check, make_data_ddp_check

def test_ddp_two_processes_match_one(tmp_path):
    w = run_ddp_check(tmp_path, 2)
    moved = max(float((w[1][k] - w['initial'][k]).abs().max()) for k in w[1])
    diff = max(float((w[1][k] - w[2][k]).abs().max()) for k in w[1])
    assert moved > 1e-2, moved  # training changed the weights
    assert diff < 1e-3, diff  # …identically on 1 and 2 processes, up to float summation order (see 11a_distributed)

def test_sft_two_processes_match_one(tmp_path):
    "`lever_plus_sft` under torchrun (2 ranks holding 3 and 4 of each batch of 7) = `lever_plus_sft` in one process"
    w = sft_ddp_check(tmp_path, 2)
    assert set(w[1]) == set(w[2]) == set(w['initial'])
    moved = max(float((w[1][k] - w['initial'][k]).abs().max()) for k in w[1])
    diff = max(float((w[1][k] - w[2][k]).abs().max()) for k in w[1])
    assert moved > 1e-2, moved  # SFT changed the weights
    assert diff < 1e-3, diff  # …identically on 1 and 2 processes, up to float summation order

def test_make_data_two_processes_byte_identical(tmp_path):
    "`lever_plus_make_data --rl` under torchrun (uneven and empty query slices) writes the files of one process, byte for byte"
    files = make_data_ddp_check(tmp_path, 2)
    assert {'beams_train.json', 'beams_val.json', 'beams_test.json', 'beams_train_rl.json', 'meta.json', 'world.json'} <= set(files)
    for name, (one, two) in files.items():
        assert one is not None and one == two, name
