"""Two runs of one model on one machine compare as alike to within float noise: the sample photos explained with
1 and with 2 threads (GRADCAM_THREADS, each run a process of its own) pass the bounds docs/regression-testing.md
calls safe, and the runs did use those thread counts."""

import json

from helpers import SAMPLES, gradcam

# The bounds the documentation gives as safe between thread counts (docs/regression-testing.md, "Determinism").
SAFE = "spearman=0.999,ssim=0.999,top10_iou=0.98,top25_iou=0.98,box_iou=0.95,same_class=1,probability_change=-0.0001"


def test_thread_counts_differ_by_float_noise_only(tmp_path):
    for threads in (1, 2):
        done = gradcam(
            "explain",
            SAMPLES,
            "--method",
            "gradcam,layercam,gradcampp",
            "--top-k",
            "2",
            "--save-raw",
            "--outputs",
            "heatmap",
            "-o",
            tmp_path / f"t{threads}",
            env={"GRADCAM_THREADS": str(threads)},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / f"t{threads}" / "run.json").read_text())["threads"] == threads
    done = gradcam("compare", tmp_path / "t1", tmp_path / "t2", "--fail-under", SAFE, "-o", tmp_path / "cmp", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["pairs"] == 8 * 3 * 2 and not summary["unpaired"]
    assert summary["means"]["spearman"] > 0.9999 and summary["means"]["same_class"] == 1.0
