"""Devices, memory layout and mixed precision: the speed options change no result.

The CUDA and MPS tests need a GPU and are skipped on CPU-only machines; the same code
paths (autocast, layout, transfers) are exercised on the CPU by the others.
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch

from gradcam_cli import Explainer, ExplainOptions, load_model, load_rgb
from gradcam_cli.errors import MethodError, UsageError
from gradcam_cli.maps.preprocess import to_model_input
from gradcam_cli.maps.scale import normalize_minmax
from gradcam_cli.model.device import host_to_device, resolve_device
from gradcam_cli.model.loading import choose_memory_format, load_architecture
from gradcam_cli.passes import explain_batch, input_memory_format

from helpers import run

CUDA = torch.cuda.is_available()
MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
needs_mps = pytest.mark.skipif(not MPS, reason="needs Apple MPS")

PHOTOS = ("cat.png", "dogs.png")


@functools.cache
def photo_batch(samples) -> torch.Tensor:
    loaded = load_model()
    return torch.stack([to_model_input(load_rgb(samples / n), loaded.preprocess)[0] for n in PHOTOS])


def normalised(maps: torch.Tensor) -> torch.Tensor:
    return normalize_minmax(maps if maps.dtype == torch.float64 else maps.float())[0]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1].item()


def explain(model, x, path, **kw):
    return explain_batch(model, x, {path: dict(model.named_modules())[path]}, guided=True, **kw)


# --------------------------------------------------------------------------- memory layout


def test_auto_layout_is_channels_last_for_cnns_and_contiguous_for_layernorm_models() -> None:
    assert choose_memory_format(load_architecture("resnet50").model) == "channels_last"
    assert choose_memory_format(load_architecture().model) == "channels_last"  # EfficientNet-Lite0
    assert choose_memory_format(load_architecture("convnext_tiny").model) == "contiguous"
    assert choose_memory_format(torch.nn.Linear(3, 2)) == "contiguous"
    assert choose_memory_format(load_architecture("resnet50").model, "contiguous") == "contiguous"
    with pytest.raises(UsageError, match="--memory-format nhwc"):
        choose_memory_format(torch.nn.Linear(3, 2), "nhwc")


def test_loaded_model_layout_and_matching_input(default_loaded) -> None:
    assert default_loaded.memory_format == "channels_last"
    assert input_memory_format(default_loaded.model) == torch.channels_last
    plain = load_model("resnet18", pretrained=False, memory_format="contiguous")
    assert plain.memory_format == "contiguous"
    assert input_memory_format(plain.model) == torch.contiguous_format
    assert all(p.is_contiguous() for p in plain.model.parameters())
    with pytest.raises(UsageError, match="--memory-format"):
        load_model("resnet18", pretrained=False, memory_format="bogus")


@pytest.mark.parametrize("name", ["default", "resnet50"])
def test_channels_last_gives_the_same_maps_and_guided_images(name, samples, default_loaded) -> None:
    """In float64 (a copy of each model: .double() keeps the layout), so the bounds are far above the rounding
    on any CPU; a layout mix-up moves maps by 1e-1 and more."""
    if name == "default":
        model, path = copy.deepcopy(default_loaded.model).double(), "bn2"
    else:
        torch.manual_seed(0)
        model, path = load_model("resnet50", pretrained=False).model.double(), "layer4"
    assert input_memory_format(model) == torch.channels_last
    contiguous = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    x = photo_batch(samples).double()
    fast, plain = explain(model, x, path), explain(contiguous, x, path)
    assert torch.equal(fast.classes, plain.classes)
    assert (normalised(fast.maps["gradcam", path]) - normalised(plain.maps["gradcam", path])).abs().max() < 1e-5
    scale = plain.guided.abs().max()
    assert scale > 0
    assert ((fast.guided - plain.guided).abs().max() / scale) < 1e-4


# --------------------------------------------------------------------------- mixed precision

# Measured on the bundled Lite0 with cat.png and dogs.png: bf16 max map difference 0.03,
# correlation 0.9997, guided correlation 0.98; fp16 0.003, 0.999997 and 0.9987.
PRECISION_BOUNDS = {"bf16": (0.1, 0.995, 0.95), "fp16": (0.02, 0.9999, 0.99)}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_on_cpu_stays_close_to_fp32(precision, samples, default_loaded) -> None:
    model, path = default_loaded.model, "bn2"
    x = photo_batch(samples)
    ref = explain(model, x, path)
    low = explain(model, x, path, precision=precision)
    assert low.logits.dtype == low.maps["gradcam", path].dtype == low.guided.dtype == torch.float32
    assert torch.equal(low.classes, ref.classes)
    max_diff, min_corr, min_guided_corr = PRECISION_BOUNDS[precision]
    a, b = normalised(ref.maps["gradcam", path]), normalised(low.maps["gradcam", path])
    assert (a - b).abs().max() < max_diff
    assert correlation(a, b) > min_corr
    assert correlation(ref.guided, low.guided) > min_guided_corr
    # The forward really ran in reduced precision: the logits moved, a little.
    assert 0 < (low.logits - ref.logits).abs().max() < 1.0


def test_unknown_precision_is_refused(default_loaded) -> None:
    with pytest.raises(UsageError, match="--precision fp8"):
        Explainer(default_loaded, ExplainOptions(precision="fp8"))
    with pytest.raises(MethodError, match="--precision fp8"):
        explain_batch(default_loaded.model, torch.zeros(1, 3, 224, 224), {}, precision="fp8")


def test_cli_precision_and_layout_options(tmp_path, samples) -> None:
    result = run(
        "explain",
        samples / "cat.png",
        "-o",
        tmp_path,
        "--precision",
        "bf16",
        "--memory-format",
        "contiguous",
        "--jsonl",
        "--outputs",
        "heatmap",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["class_index"] == 285
    assert (tmp_path / record["files"]["heatmap"].split("/")[-1]).exists()
    bad = run("explain", samples / "cat.png", "-o", tmp_path / "x", "--precision", "half")
    assert bad.exit_code == 2
    assert "--precision half" in bad.stderr


# --------------------------------------------------------------------------- devices


def test_host_to_device_on_the_same_device_is_free() -> None:
    batch = torch.zeros(2, 3, 4, 4)
    assert host_to_device(batch, torch.device("cpu")) is batch


def test_auto_device_prefers_cuda_then_mps(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


@needs_cuda
def test_host_to_device_pins_and_copies_to_cuda() -> None:
    batch = torch.arange(24.0).reshape(2, 3, 2, 2)
    moved = host_to_device(batch, torch.device("cuda"))
    torch.cuda.synchronize()
    assert moved.device.type == "cuda"
    assert torch.equal(moved.cpu(), batch)


def _cuda_vs_cpu(samples, precision: str, bounds: tuple[float, float, float]) -> None:
    cpu = load_model()
    gpu = load_model(device="cuda")
    x = photo_batch(samples)
    ref = explain(cpu.model, x, "bn2")
    res = explain(gpu.model, host_to_device(x, torch.device("cuda")), "bn2", precision=precision)
    assert res.maps["gradcam", "bn2"].device.type == "cuda"
    assert torch.equal(res.classes.cpu(), ref.classes)
    max_diff, min_corr, min_guided_corr = bounds
    a, b = normalised(ref.maps["gradcam", "bn2"]), normalised(res.maps["gradcam", "bn2"].cpu())
    assert (a - b).abs().max() < max_diff
    assert correlation(a, b) > min_corr
    assert correlation(ref.guided, res.guided.cpu()) > min_guided_corr


@needs_cuda
def test_cuda_fp32_matches_cpu(samples, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions round to 10 bits
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    _cuda_vs_cpu(samples, "fp32", (1e-4, 0.99999, 0.99))


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_autocast_close_to_cpu_fp32(samples, precision) -> None:
    """The same bounds as on the CPU (measured on an H200: bf16 guided correlation 0.979)."""
    _cuda_vs_cpu(samples, precision, PRECISION_BOUNDS[precision])


@needs_cuda
def test_cli_on_cuda_with_fp16(tmp_path, samples) -> None:
    result = run("explain", samples / "cat.png", "-o", tmp_path, "--device", "cuda", "--precision", "fp16", "--jsonl")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["class_index"] == 285
    assert len(list(tmp_path.glob("*.png"))) == 4


@needs_mps
def test_mps_matches_cpu(samples) -> None:
    cpu, mps = load_model(), load_model(device="mps")
    x = photo_batch(samples)
    ref = explain(cpu.model, x, "bn2")
    res = explain(mps.model, x.to("mps"), "bn2")
    assert torch.equal(res.classes.cpu(), ref.classes)
    assert (normalised(ref.maps["gradcam", "bn2"]) - normalised(res.maps["gradcam", "bn2"].cpu())).abs().max() < 1e-3
