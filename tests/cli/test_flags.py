"""Flags as a newcomer types them: comma lists, the help text, an empty output folder, missing inputs, the default
view, Ctrl-C while starting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import SAMPLES, gradcam, records, run


def test_repeatable_flags_take_comma_lists_too(tmp_path) -> None:
    commas = records(
        run(
            "explain",
            SAMPLES / "cat.png",
            "-o",
            tmp_path / "a",
            "--json",
            "--outputs",
            "heatmap",
            "--method",
            "gradcam,layercam",
            "--layer",
            "blocks.5,bn2",
            "--class",
            "285,tabby",
        )
    )
    repeated = records(
        run(
            "explain",
            SAMPLES / "cat.png",
            "-o",
            tmp_path / "b",
            "--json",
            "--outputs",
            "heatmap",
            "--method",
            "gradcam",
            "--method",
            "layercam",
            "--layer",
            "blocks.5",
            "--layer",
            "bn2",
            "--class",
            "285",
            "--class",
            "tabby",
        )
    )
    key = [(r["method"], r["layer"], r["class_index"], r["probability"]) for r in commas]
    assert key == [(r["method"], r["layer"], r["class_index"], r["probability"]) for r in repeated]
    assert {(m, lay) for m, lay, _, _ in key} == {
        (m, lay) for m in ("gradcam", "layercam") for lay in ("blocks.5", "bn2")
    }
    assert {c for _, _, c, _ in key} == {285, 281}


def test_a_class_name_with_a_comma_stays_whole(tmp_path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["cat, domestic", *(f"class {i}" for i in range(1, 1000))]) + "\n")
    found = records(
        run(
            "explain",
            SAMPLES / "cat.png",
            "-o",
            tmp_path / "o",
            "--json",
            "--outputs",
            "heatmap",
            "--labels",
            labels,
            "--class",
            "cat, domestic",
        )
    )
    assert [r["class_index"] for r in found] == [0] and found[0]["class_name"] == "cat, domestic"


def test_an_empty_output_folder_is_refused(tmp_path) -> None:
    os.chdir(tmp_path)
    result = run("explain", SAMPLES / "cat.png", "-o", "")
    assert result.exit_code == 2 and "--output-dir: empty" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_inputs_that_are_all_missing_are_refused_before_anything_loads(tmp_path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, runpy; sys.argv = ['gradcam', 'explain', 'missing.png', '-o', sys.argv[1]]\n"
        "try:\n    runpy.run_module('gradcam_cli', run_name='__main__')\nexcept SystemExit as e:\n"
        "    print('EXIT', e.code, sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert "EXIT 2 []" in done.stdout, done.stdout + done.stderr
    assert done.stderr.strip() == "gradcam: error: no input images found: missing.png: no such file"
    assert not out.exists()


def test_help_names_its_arguments_plainly() -> None:
    for command in ("explain", "evaluate", "layers", "methods", "report"):
        text = run(command, "--help").output
        assert "{" not in text and "<list" not in text and "list[str]" not in text, command
    assert "INPUTS..." in run("explain", "--help").output and "OUTDIR" in run("report", "--help").output


def test_the_default_view_is_the_models_own_crop(tmp_path) -> None:
    """The model as deployed: its eval transform. The full view changes its answer on these photos."""
    default = {
        r["input"]: r for r in records(run("explain", SAMPLES, "-o", tmp_path / "d", "--json", "--outputs", "heatmap"))
    }
    crop = {
        r["input"]: r
        for r in records(
            run("explain", SAMPLES, "-o", tmp_path / "c", "--json", "--view", "crop", "--outputs", "heatmap")
        )
    }
    full = {
        r["input"]: r
        for r in records(
            run("explain", SAMPLES, "-o", tmp_path / "f", "--json", "--view", "full", "--outputs", "heatmap")
        )
    }
    assert {r["view"] for r in default.values()} == {"crop"} and {r["view"] for r in full.values()} == {"full"}
    assert [(r["class_index"], r["probability"]) for r in default.values()] == [
        (r["class_index"], r["probability"]) for r in crop.values()
    ]
    cat = str(SAMPLES / "cat.png")
    assert default[cat]["class_name"] == "Egyptian cat" and default[cat]["probability"] > 0.5
    assert full[cat]["probability"] < 0.2  # the full view is another input: other probabilities
    run_info = json.loads((tmp_path / "d" / "run.json").read_text())
    assert run_info["view"] == "crop" and run_info["options"]["explain"]["view"] == "crop"


def test_ctrl_c_while_starting_says_so_and_exits_130(tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradcam_cli", "explain", str(SAMPLES / "cat.png"), "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(1.0)  # importing torch and loading the model: no job has started yet
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert (
        stderr.strip().splitlines()[-1] in ("gradcam: interrupted", "gradcam: aborted") or "(interrupted)" in stderr
    ), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("value", ["x", "0"])
def test_a_bad_thread_count_is_a_usage_error(tmp_path, value) -> None:
    result = gradcam("explain", SAMPLES / "cat.png", "-o", tmp_path / "out", env={"GRADCAM_THREADS": value})
    assert result.returncode == 2 and f"GRADCAM_THREADS={value}" in result.stderr, result.stderr
    flag = run("explain", SAMPLES / "cat.png", "-o", tmp_path / "out", "--threads", "0")
    assert flag.exit_code == 2 and "--threads 0: must be at least 1" in flag.stderr
