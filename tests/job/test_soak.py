"""A long run keeps its memory flat and leaves no hook behind."""

from pathlib import Path

import pytest
from PIL import Image

from helpers import SAMPLES


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the resident set size")
def test_soak_300_images_flat_memory_and_no_hooks_left(tmp_path, default_loaded):
    from gradcam_cli import Explainer, ExplainOptions
    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.explain import run_explain
    from gradcam_cli.options import JobOptions

    folder = tmp_path / "in"
    folder.mkdir()
    sources = [Image.open(p).convert("RGB").resize((64, 64)) for p in sorted(SAMPLES.glob("*.png"))]
    for i in range(300):
        sources[i % len(sources)].rotate(i).save(folder / f"img{i:03d}.jpg", quality=85)
    items = collect_inputs([str(folder)])
    assert len(items) == 300
    model = default_loaded.model
    grads_before = [p.requires_grad for p in model.parameters()]
    explainer = Explainer(default_loaded, ExplainOptions(outputs=("heatmap",), batch_size=4))
    rss: dict[int, int] = {}
    count = 0

    def on_record(record):
        nonlocal count
        assert "error" not in record, record
        count += 1
        if count in (50, 300):
            rss[count] = _rss_bytes()

    summary = run_explain(explainer, items, tmp_path / "out", JobOptions(workers=2), on_record=on_record)
    assert summary.done == 300 and summary.failed == 0
    growth = (rss[300] - rss[50]) / rss[50]
    assert growth < 0.10, f"RSS grew {growth:.1%}: {rss[50] >> 20} MiB after 50 images, {rss[300] >> 20} MiB after 300"
    for name, module in model.named_modules():
        assert not module._forward_hooks, f"forward hook left on {name or 'the model'}"
        assert not module._forward_pre_hooks, f"forward pre-hook left on {name or 'the model'}"
        assert not module._backward_hooks, f"backward hook left on {name or 'the model'}"
        assert not getattr(module, "_backward_pre_hooks", None), f"backward pre-hook left on {name or 'the model'}"
    assert [p.requires_grad for p in model.parameters()] == grads_before
    assert all(p.grad is None for p in model.parameters())
    assert len(list((tmp_path / "out").glob("*_heatmap.png"))) == 300
