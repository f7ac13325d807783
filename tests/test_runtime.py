"""Device choice and GPU claims (resnet9/runtime.py), on the CPU: the GPU count is a parameter
of the claim, so that several "GPUs" can be claimed, held, killed and waited for without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import ROOT, torch_threads
from resnet9 import runtime
from resnet9.params import ParamsError

CPU = torch.device("cpu")


def test_unavailable_device_is_a_params_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ParamsError, match=r"recipe.device: 'cuda' is not available"):
        runtime.select_device("cuda")
    assert runtime.select_device("auto") == CPU


def test_the_log_line_names_the_cpu_threads_and_the_processes():
    with torch_threads(1):
        assert runtime.describe(CPU) == "cpu, 1 thread"
    with torch_threads(2):
        assert runtime.describe(CPU) == "cpu, 2 threads"
        assert runtime.describe(CPU, world=4) == "cpu x 4 processes, 2 threads"
    assert runtime.describe(torch.device("cuda", 1)) == "cuda:1"
    assert runtime.describe(torch.device("cuda"), world=8) == "cuda x 8 processes"


def test_two_claims_get_two_different_gpus_and_a_released_one_is_claimed_again(tmp_path):
    first = runtime.try_claim(2, tmp_path)
    second = runtime.try_claim(2, tmp_path)
    assert first[0] == 0 and second[0] == 1
    assert runtime.try_claim(2, tmp_path) is None  # both held
    first[1].close()  # the run on GPU 0 ends
    again = runtime.try_claim(2, tmp_path)
    assert again[0] == 0
    for _, held in (second, again):
        held.close()


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from resnet9 import runtime
index, held = runtime.try_claim({count}, {dir!r})
print(index, flush=True)
time.sleep(600)
"""


def _holder(tmp_path, count: int) -> subprocess.Popen:
    """A process that claims one of ``count`` GPUs and holds it; its first line is the index."""
    code = HOLDER.format(root=str(ROOT), count=count, dir=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "0"  # an event, not a wall-clock guess
    return proc


def test_a_claim_left_by_a_killed_process_is_reclaimed(tmp_path):
    holder = _holder(tmp_path, 1)
    assert runtime.try_claim(1, tmp_path) is None  # the live process holds GPU 0
    holder.send_signal(signal.SIGKILL)  # dies without any clean-up of its own
    holder.wait()
    claim = runtime.try_claim(1, tmp_path)
    assert claim is not None and claim[0] == 0
    assert (tmp_path / "gpu0.lock").read_text() == f"pid {os.getpid()}\n"
    claim[1].close()


def test_with_no_free_gpu_the_run_waits_until_one_is_released(tmp_path, capsys):
    holder = _holder(tmp_path, 1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(runtime.claim_gpu(1, tmp_path,
                                                                          poll_s=0.05)))
    waiter.start()
    while "waiting for a free GPU" not in capsys.readouterr().err:  # it says so, then waits
        assert waiter.is_alive()
        time.sleep(0.05)
    assert not got
    holder.kill()
    holder.wait()
    waiter.join(timeout=60)
    assert got and got[0][0] == 0
    got[0][1].close()


def test_the_lock_directory_follows_dvc_root():
    from resnet9 import paths

    assert paths.in_project(paths.GPU_LOCK_DIR, {"DVC_ROOT": "/work/repo"}) == runtime.Path(
        "/work/repo/.cache/gpu-locks")
    assert paths.in_project(paths.GPU_LOCK_DIR, {}) == runtime.Path(".cache/gpu-locks")
