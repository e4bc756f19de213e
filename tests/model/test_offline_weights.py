"""Pretrained weights offline: one full line when they are missing, no network when cached."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

from helpers import SAMPLES, gradcam_process


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_run(tmp_path, model, **env):
    """``gradcam explain`` with pretrained weights that are not cached, with ``env`` instead of
    HF_HUB_OFFLINE; returns (completed process, seconds)."""
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environ.update(env, HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"))
    start = time.perf_counter()
    done = gradcam_process("explain", SAMPLES / "cat.png", "--model", model, "-o", tmp_path / "out", env=environ)
    return done, time.perf_counter() - start


def assert_one_full_line(done, model: str, cache: Path, why: str) -> None:
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"gradcam: error: --model {model}: its pretrained weights are not in the cache ({cache})")
    assert re.search(why, line), line
    assert "--weights FILE" in line and "--no-pretrained" in line and line.endswith("while online.")


def test_offline_hub_weights_fail_fast_in_one_full_line(tmp_path):
    # The hub unreachable: a closed local port (never the real network). Before, the client retried for ~50 s.
    unreachable, seconds = offline_run(tmp_path, "resnet18", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert_one_full_line(
        unreachable, "timm/resnet18", tmp_path / "hf" / "hub", r"\(127\.0\.0\.1 cannot be reached: Connection refused\)"
    )
    offline, baseline = offline_run(tmp_path, "resnet18", HF_HUB_OFFLINE="1")  # same start-up, no network at all
    assert_one_full_line(offline, "timm/resnet18", tmp_path / "hf" / "hub", r"\(HF_HUB_OFFLINE is set\)")
    # The client's retries took 46 s (1+2+4+8+8 s for each of two file names); the check takes a refused connect.
    assert seconds - baseline < 10, f"{seconds:.1f} s against {baseline:.1f} s without any network"


def test_offline_torchvision_weights_fail_in_one_full_line(tmp_path):
    dead_proxy = f"http://127.0.0.1:{closed_port()}"  # download.pytorch.org through it: never the real network
    done, seconds = offline_run(tmp_path, "torchvision/resnet18", https_proxy=dead_proxy)
    assert_one_full_line(
        done,
        "torchvision/resnet18",
        tmp_path / "torch" / "hub" / "checkpoints",
        r"download\.pytorch\.org cannot be reached through the proxy 127\.0\.0\.1:\d+: "
        r"Connection refused",
    )


def test_pretrained_weights_in_the_cache_need_no_network(tmp_path):
    import timm
    from safetensors.torch import save_file

    snapshot = tmp_path / "hf" / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), snapshot / "model.safetensors")
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environ.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    done = gradcam_process(
        "explain",
        SAMPLES / "cat.png",
        "--model",
        "resnet18",
        "-o",
        tmp_path / "out",
        "--json",
        "--outputs",
        "heatmap",
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["weights"] == "pretrained (timm/resnet18.a1_in1k, from the cache)"
