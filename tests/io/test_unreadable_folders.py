"""Folders that cannot be read: a failure naming them, or a bad request when given directly."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from helpers import SAMPLES, manifest_records, run


def deny_listing(monkeypatch, folder: Path) -> None:
    """``folder`` cannot be listed (tests run as root, where chmod 000 would not stop it)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) == os.path.abspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    (root / "cat.png").write_bytes((SAMPLES / "cat.png").read_bytes())
    (root / "locked" / "dogs.png").write_bytes((SAMPLES / "dogs.png").read_bytes())
    return root


def test_an_unreadable_subfolder_is_a_failure_naming_it(tree, tmp_path, monkeypatch):
    deny_listing(monkeypatch, tree / "locked")
    out = tmp_path / "out"
    result = run("explain", tree, "-r", "-o", out, "--outputs", "heatmap")
    assert result.exit_code == 1, result.output
    message = f"{tree / 'locked'}: cannot list this folder (Permission denied)"
    assert f"gradcam: {message}\n" in result.stderr
    assert {"input": str(tree / "locked"), "error": message} in manifest_records(out)
    assert any(r.get("input") == str(tree / "cat.png") and "error" not in r for r in manifest_records(out))


def test_an_unreadable_folder_given_directly_is_a_bad_request(tree, tmp_path, monkeypatch):
    deny_listing(monkeypatch, tree / "locked")
    result = run("explain", tree / "locked", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"gradcam: error: no input images found: {tree / 'locked'}: cannot list this folder (Permission denied)\n"
    )


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root lists any folder; the tests above patch it")
def test_a_really_unreadable_subfolder(tree, tmp_path):
    (tree / "locked").chmod(0)
    try:
        result = run("explain", tree, "-r", "-o", tmp_path / "out", "--outputs", "heatmap")
    finally:
        (tree / "locked").chmod(0o755)
    assert result.exit_code == 1 and "cannot list this folder (Permission denied)" in result.stderr
