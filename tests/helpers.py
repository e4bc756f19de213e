"""Small models and comparison helpers shared by several test files."""

import builtins
import contextlib
import errno
import functools
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn


@functools.cache
def oracle_model(name: str) -> nn.Module:
    """A model for oracle comparisons: timm's ``name`` at random init (seed 0), or ``lite0``, the bundled
    EfficientNet-Lite0 with its real weights, unfolded and contiguous (as timm builds it)."""
    torch.manual_seed(0)
    if name == "lite0":
        from gradcam_cli import load_model

        return load_model(fold_bn=False, memory_format="contiguous").model
    import timm

    return timm.create_model(name, pretrained=False).eval()


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scaled maps; an empty map would make a comparison vacuous, so it fails the test."""
    from gradcam_cli.maps.scale import normalize_minmax

    out, empty = normalize_minmax(maps.float())
    assert not empty.any(), "an empty map would make the comparison vacuous"
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


class BrightnessNet(nn.Module):
    """Full-resolution 'features' = input brightness; the map is where the photo is bright."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        nn.init.constant_(self.features.weight, 1.0)
        nn.init.zeros_(self.features.bias)
        self.fc = nn.Linear(4, 2)
        nn.init.constant_(self.fc.weight, 1.0)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Tensors an oracle builds without a dtype (``torch.Tensor(list)``, ``torch.randn``) take ``dtype``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# --------------------------------------------------------------------------- float32 rounding bounds
# Where a comparison runs in float32 (what users run), its bound is derived from the computation with the
# standard model of floating-point arithmetic: each operation is exact up to a factor (1 + d), |d| <= U32, and a
# sum of n + 1 terms is off by at most gamma32(n) times the sum of their magnitudes (Higham, "Accuracy and
# Stability of Numerical Algorithms", 2nd ed., sec. 3.1). The magnitudes come from the actual values.

U32 = 2.0**-24  # float32's unit roundoff: half the distance from 1.0 to the next float32


def gamma32(n: int) -> float:
    """The relative error bound of n successive float32 roundings (a sum of n + 1 terms, a mean of n + 1 values)."""
    return n * U32 / (1 - n * U32)


def minmax_bound(error: float, span: float) -> float:
    """How far min-max scaling can move a value of a map whose values are each off by at most ``error``: the
    value, the minimum and the maximum each move by at most ``error``, so the scaled value by at most
    4 error / (span - 2 error), for a map of range ``span``."""
    assert span > 2 * error, f"a range of {span:.3g} is within rounding ({error:.3g}): the comparison would be vacuous"
    return 4 * error / (span - 2 * error)


# --------------------------------------------------------------------------- running the command
runner = CliRunner()  # one for every in-process run of the command
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
SCHEMA = json.loads((ROOT / "gradcam_cli" / "record.schema.json").read_text())


def run(*args, **kw):
    """``gradcam ARGS`` in this process (click's runner): fast; stdout and stderr kept apart. ``kw`` goes to
    ``CliRunner.invoke`` (``input``, ``env``, ``catch_exceptions``)."""
    from gradcam_cli.cli import app

    return runner.invoke(app, [str(a) for a in args], **kw)


def gradcam(*args, input=None, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    """``gradcam ARGS`` as a process of its own (``python -m gradcam_cli``), text in and out, ``env`` added to this
    process's environment (offline)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return gradcam_process(*args, input=input, env=full, timeout=timeout, **kw)


def jsonl(text: str) -> list[dict]:
    """The JSON objects of JSON-lines text (lines end at \\n only, as the tool writes them)."""
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def records(result) -> list[dict]:
    """The records a run printed with --json: the lines of its stdout that are JSON objects (split at \n only,
    as the tool writes them)."""
    return [json.loads(line) for line in result.stdout.split("\n") if line.startswith("{")]


def gradcam_here(*args, input: str | None = None):
    """The ``gradcam`` command run in this process, as a ``subprocess.CompletedProcess``: for tests of what the
    command does rather than of its process (signals, pipes, umask, environment, imports), as starting a process
    costs seconds (Python, torch, the model). Unexpected exceptions propagate as they are."""
    import subprocess

    from click.testing import CliRunner

    from gradcam_cli.cli import app

    argv = [str(a) for a in args]
    result = CliRunner().invoke(app, argv, input=input, catch_exceptions=False)
    return subprocess.CompletedProcess(argv, result.exit_code, result.stdout, result.stderr)


# --------------------------------------------------------------------------- what a run imports
HEAVY_MODULES = ("torch", "timm", "torchvision", "cv2", "numpy", "ray", "pyarrow")
_PROBE = """
import json, sys
from gradcam_cli.cli import main
heavy = json.loads(sys.argv[2])
sys.argv = ["gradcam"] + json.loads(sys.argv[1])
code = 0
try:
    main()
except SystemExit as stop:
    code = stop.code
print("\\nPROBE=" + json.dumps({"exit": code, "imported": [m for m in heavy if m in sys.modules]}))
"""


@dataclass
class Probe:
    """A run of the command in a fresh process: what it printed, its exit code, the heavy modules it imported."""

    stdout: str
    stderr: str
    exit_code: int
    imported: list[str]


def probe(args: list[str], env: dict | None = None) -> Probe:
    """``gradcam ARGS`` in a fresh Python, reporting which of `HEAVY_MODULES` it imported."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([str(a) for a in args]), json.dumps(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        env=full,
    )
    body, marker, report = done.stdout.rpartition("\nPROBE=")
    assert marker, done.stdout + done.stderr
    found = json.loads(report)
    return Probe(body, done.stderr, found["exit"], found["imported"])


# --------------------------------------------------------------------------- files, photos and faults
def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def samoyed_photo(size=(96, 64)) -> Image.Image:
    return Image.open(SAMPLES / "samoyed.png").convert("RGB").resize(size)


def sample_photos() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.png"))] + [
        Image.open(SAMPLES / "hot_dog.jpg").convert("RGB")
    ]


def make_tree(root: Path, n: int, size=(96, 72)) -> list[Path]:
    """n small photos in nested folders; every third folder reuses the same file names."""
    photos = sample_photos()
    paths = []
    for i in range(n):
        folder = root / f"set{i % 4}" / ("deep" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"img{i // 4:02d}.jpg"
        photos[i % len(photos)].resize(size).save(p, quality=90)
        paths.append(p)
    return paths


def manifest_records(folder: Path) -> list[dict]:
    """The records of ``folder``'s results.jsonl (lines end at \\n only, as the tool writes them)."""
    return jsonl((folder / "results.jsonl").read_text())


def deny_reading(monkeypatch, target: Path) -> None:
    """Simulate a file without read permission (tests run as root, so chmod 000 would not block reads)."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == os.path.abspath(target):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)  # pathlib opens through io.open


def refuse_access(monkeypatch, target: Path, refused_modes: int) -> None:
    """``os.access`` says no for ``target`` when asked for any of ``refused_modes``."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(target) and mode & refused_modes:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def assert_usage_error(result, needle, out: Path | None = None) -> None:
    """One line on stderr naming ``needle``, exit 2, no traceback, and (``out``) nothing written."""
    assert result.exit_code == 2, result.output
    assert needle in result.stderr, result.stderr
    assert one_line(result.stderr), result.stderr
    assert result.stderr.startswith("gradcam: error: ")
    assert "Traceback" not in result.output
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), "outputs were written"


def gradcam_process(*args, input=None, env=None, umask=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """The installed command in a fresh process with exactly ``env`` (None: this one's) and ``umask``."""
    return subprocess.run(
        [sys.executable, "-m", "gradcam_cli", *map(str, args)],
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        **kw,
    )


# --------------------------------------------------------------------------- pages in Chromium
def open_page(browser, index: Path):
    """The page, with every request, error (CSP violations included: Chromium logs them as console errors)
    and dialog it has from its first moment."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors, dialogs = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors, dialogs
