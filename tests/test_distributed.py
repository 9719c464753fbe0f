"Two torchrun processes (gloo, CPU) train to the same weights as one process on the same global batch"
import pytest, torch
from lever_plus.dist import run_ddp_check

def test_ddp_two_processes_match_one(tmp_path):
    w = run_ddp_check(tmp_path, 2)
    moved = max(float((w[1][k] - w['initial'][k]).abs().max()) for k in w[1])
    diff = max(float((w[1][k] - w[2][k]).abs().max()) for k in w[1])
    assert moved > 1e-2, moved  # training changed the weights
    assert diff < 1e-3, diff  # …identically on 1 and 2 processes, up to float summation order (see 11a_distributed)
