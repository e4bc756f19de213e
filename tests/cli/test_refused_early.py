"""Bad requests are refused before the model or anything else is loaded."""

from __future__ import annotations

import pytest

from helpers import SAMPLES, probe


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--method", "gradcam++"], "--method gradcam++: unknown"),
        (["--class", "cat"], "'tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat'"),
        (["--class", "1000"], "out of range, the model has classes 0..999"),
        (["--class", "tabby", "--top-k", "3"], "--class and --top-k conflict"),
        (["--overwrite", "--skip-existing"], "--overwrite and --skip-existing conflict"),
        (["--weights", "/nonexistent/model.pt"], "--weights /nonexistent/model.pt: no such file"),
        (
            ["--num-classes", "2", "--labels", "LABELS", "--class", "zebra"],
            "--class 'zebra': no class of that name; did you mean: 'zebu'?",
        ),
        (["--labels", "LABELS"], "has 2 names but the model has 1000 classes"),
        (["--max-output-pixels", "0"], "--max-output-pixels 0: must be at least 1"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_loaded(tmp_path, flags, needle):
    labels = tmp_path / "labels.txt"
    labels.write_text("zebu\nyak\n")
    flags = [str(labels) if f == "LABELS" else f for f in flags]
    import resource

    args = ["explain", str(SAMPLES / "cat.png"), "-o", str(tmp_path / "out"), *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = probe(args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.exit_code == 2, done.stderr
    assert done.stderr.startswith("gradcam: error: ") and needle in done.stderr and done.stderr.count("\n") == 1
    assert done.imported == []  # no torch, no timm: the model was never built
    # Start-up included, in processor time (the wall time on an idle machine; a shared one only stretches it).
    seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert seconds < 1.5, f"{seconds:.2f} s"
    assert not (tmp_path / "out").exists()
