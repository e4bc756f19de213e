"""``gradcam evaluate --faithfulness`` off a terminal (a CI log, a pipe): it runs for minutes, so it says how far
it is, at what rate and how long is left; and its summary line keeps the explain phase's seconds that scripts
read."""

from __future__ import annotations

import re

from helpers import ROOT, SAMPLES, run

PROGRESS = re.compile(r"gradcam: evaluating (\d+) of (\d+) images, (\d+\.\d\d) images/s(?:; about (\d+) (s|min) left)?")
SUMMARY = re.compile(r"gradcam: 3 done, 0 skipped, 0 failed of 3; explain phase (\d+\.\d\d) s \((\d+\.\d\d) images/s\)")


def test_evaluate_faithfulness_off_a_terminal_says_its_rate_and_the_time_left(monkeypatch, tmp_path) -> None:
    from gradcam_cli.cli import console

    monkeypatch.setattr(console, "PROGRESS_LINE_S", 0.0)  # a line at every image rather than every 30 s
    photos = [SAMPLES / name for name in ("cat.png", "dogs.png", "samoyed.png")]
    result = run(
        "evaluate",
        *photos,
        "-a",
        ROOT / "tests" / "data" / "sample_boxes.csv",
        "-o",
        tmp_path,
        "--faithfulness",
        "--faithfulness-steps",
        "3",
        "--layer",
        "blocks.6",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    progress = [PROGRESS.fullmatch(line) for line in lines if line.startswith("gradcam: evaluating")]
    assert all(progress), lines
    assert {int(m[2]) for m in progress} == {3}  # the job's count, not the 0 the console starts with
    finished = [int(m[1]) for m in progress]
    assert finished == sorted(finished) and {1, 2, 3} <= set(finished)
    for m in progress:
        done, rate = int(m[1]), float(m[3])
        assert (rate > 0) == (done > 0)
        if 0 < done < 3:  # time left while images remain: the images left at the rate so far
            assert m[4] is not None, m[0]
            left, unit = int(m[4]) * (60 if m[5] == "min" else 1), 60 if m[5] == "min" else 1
            # The rate is shown to 0.01 and the time left to the unit: the estimate from the shown rate, widened
            # by both roundings.
            low, high = (3 - done) / (rate + 0.005), (3 - done) / max(1e-9, rate - 0.005)
            assert low - unit / 2 <= left <= high + unit / 2, m[0]
        else:
            assert m[4] is None, m[0]
    summary = [line for line in lines if line.startswith("gradcam: 3 done")]
    assert len(summary) == 1 and SUMMARY.match(summary[0]), lines
    assert float(SUMMARY.match(summary[0])[1]) > 0
