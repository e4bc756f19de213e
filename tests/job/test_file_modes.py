"""Outputs and caches are created with the user's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from helpers import SAMPLES, gradcam_process


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    out = tmp_path / "out"
    done = gradcam_process("explain", SAMPLES / "cat.png", "-o", out, umask=umask)
    assert done.returncode == 0, done.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.jsonl", "cat_gradcam_bn2_c285_overlay.png"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


def test_layer_cache_follows_the_umask(tmp_path):
    # The cache of layer tables holds names and shapes only; a team's shared GRADCAM_CACHE_DIR must be readable.
    code = "from gradcam_cli.model.layer_cache import write_table; write_table('k', {'layers': []})"
    env = dict(os.environ, GRADCAM_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, preexec_fn=lambda: os.umask(0o022))
    assert stat.S_IMODE((tmp_path / "layers-k.json").stat().st_mode) == 0o644
