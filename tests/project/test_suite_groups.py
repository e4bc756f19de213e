"""The suite's one-at-a-time group works: with ``--dist loadgroup`` the tests that share an ``xdist_group`` run on
one worker (tests/conftest.py puts the Ray, browser and timing tests there). pytest 9.2 with pytest-xdist 3.8
ignores every group without a word, and the Ray tests then start actors on both workers at once."""

from __future__ import annotations

import os
import subprocess
import sys

GROUPED = """
import os, pytest

@pytest.mark.xdist_group("serial")
@pytest.mark.parametrize("n", range(4))
def test_grouped(n):
    with open(os.path.join(os.environ["WORKERS_SEEN"], f"grouped-{n}"), "w") as fh:
        fh.write(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.parametrize("n", range(8))
def test_free(n):
    pass
"""


def test_tests_of_one_group_run_on_one_worker(tmp_path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "workers").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "base"), str(tmp_path / "test_grouped.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "WORKERS_SEEN": str(tmp_path / "workers")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    workers = {p.read_text() for p in (tmp_path / "workers").glob("grouped-*")}
    assert len(list((tmp_path / "workers").glob("grouped-*"))) == 4
    assert len(workers) == 1, f"one group ran on {sorted(workers)}: pytest-xdist ignored the group"
