"""Threads for the model's arithmetic: --threads, GRADCAM_THREADS, and a default that gives way to other work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gradcam_cli import threads

from helpers import SAMPLES, gradcam


def test_the_flag_and_the_variable_set_the_threads(tmp_path) -> None:
    for extra, env, expected in ((["--threads", "1"], {}, 1), ([], {"GRADCAM_THREADS": "2"}, 2)):
        out = tmp_path / f"out{expected}"
        done = gradcam("explain", SAMPLES / "cat.png", "-o", out, "--outputs", "heatmap", *extra, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads((out / "run.json").read_text())["threads"] == expected


def test_explicit_counts_win_and_omp_num_threads_is_respected(monkeypatch) -> None:
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    assert threads.choose_threads(3) == (3, "--threads")
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.choose_threads(None) == (2, threads.THREADS_ENV)
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.choose_threads(None) == (None, "OMP_NUM_THREADS")


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the free cores are read from Linux's /proc/stat")
def test_busy_cores_are_left_to_their_work(monkeypatch) -> None:
    """With every core kept busy by other processes, the default is one thread (PyTorch's would be one per
    core, each spinning at every barrier for the others: the collapse this avoids)."""
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cores = len(threads.usable_cores())
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        threads.prepare_process()
        time.sleep(1.0)
        count, why = threads.choose_threads(None)
    finally:
        for p in loops:
            p.kill()
            p.wait()
    assert count == 1, why
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # for the OpenMP runtime torch starts after this
