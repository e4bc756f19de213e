"""What a person and a pipe read: one whole record a line, the summary, the help's defaults."""

from __future__ import annotations

import os
import re
import time

import pytest

from gradcam_cli.cli import app

from helpers import SAMPLES, gradcam_process


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    deep = tmp_path_factory.mktemp("p") / ("a_rather_long_folder_name_" * 4) / "and_another_one_below_it"
    deep.mkdir(parents=True)
    for name in ("cat.png", "dogs.png"):
        (deep / name).write_bytes((SAMPLES / name).read_bytes())
    start = time.perf_counter()
    done = gradcam_process("explain", deep, "-o", deep.parent / "out", "--outputs", "heatmap")
    return done, deep, time.perf_counter() - start


def test_off_a_terminal_each_record_is_one_whole_line(piped_run):
    done, deep, _ = piped_run
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [row[:4] for row in rows] == [
        [str(deep / "cat.png"), "gradcam", "bn2", "285 Egyptian cat"],
        [str(deep / "dogs.png"), "gradcam", "bn2", "188 wire-haired fox terrier"],
    ]
    assert all(
        len(row) == 6 and re.fullmatch(r"0\.\d{3}", row[4]) and re.fullmatch(r"(\d+,){3}\d+", row[5]) for row in rows
    )


def test_the_summary_reports_wall_time_since_start_and_the_explain_rate(piped_run):
    done, _, outside = piped_run
    summary = done.stderr.strip().splitlines()[-1]
    found = re.fullmatch(
        r"gradcam: 2 done, 0 skipped, 0 failed of 2; explain phase ([\d.]+) s "
        r"\(([\d.]+) images/s\); wall time ([\d.]+) s since the process started",
        summary,
    )
    assert found, summary
    phase, rate, wall = map(float, found.groups())
    assert phase < wall <= outside + 0.2  # start-up counted in the wall time, never more than the process lived
    assert rate == pytest.approx(2 / phase, rel=0.1, abs=0.02)


@pytest.mark.parametrize("command", ["explain", "layers", "methods"])
def test_help_shows_every_default_in_full(command):
    import click

    env = dict(os.environ, COLUMNS="80", TERMINAL_WIDTH="80")
    text = gradcam_process(command, "--help", env=env).stdout
    assert "…" not in text
    flat = "".join(text.split())
    cmd = app.commands[command]
    ctx = click.Context(cmd, info_name=command)
    for param in cmd.params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        assert "".join(names.split()) in flat, names  # every option's name, whole
        default = re.search(r"\[default: ([^\]]+)\]", help_text)
        if default:
            assert f"[default:{''.join(default.group(1).split())}]" in flat, (param.name, default.group(0))
    assert "[default:heatmap,overlay,guided,bbox]" in flat or command != "explain"
