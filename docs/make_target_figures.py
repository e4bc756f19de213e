"""Remake the pictures of docs/targets.md with the tool itself: ``python docs/make_target_figures.py``.

Each picture is one overlay (or one sheet) the command under it in the page writes, re-encoded with a
256-colour palette and at most 480 pixels wide so that the repository stays small. The classifier targets use
the bundled EfficientNet-Lite0 with its real ImageNet weights; the detector and segmenter are torchvision's
at random init (``--no-pretrained``: their weights cannot be downloaded where these pictures are made).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "targets"
WIDTH = 480

# picture name -> (the command's arguments after "gradcam explain", which of its files to keep)
COMMANDS: dict[str, tuple[list[str], str]] = {
    "class": (["sample_images/cat_and_dog.png", "--class", "243"], "*_overlay.png"),
    "probability": (["sample_images/cat_and_dog.png", "--class", "243", "--target", "probability"], "*_overlay.png"),
    "contrastive": (["sample_images/cat_and_dog.png", "--class", "243", "--versus", "tabby"], "*_overlay.png"),
    "sigmoid": (["sample_images/samoyed.png", "--head", "sigmoid", "--label-threshold", "0.9"], "*_overlay.png"),
    "similarity": (["sample_images/dogs.png", "--similar-to", "sample_images/samoyed.png"], "*_overlay.png"),
    "detection": (
        [
            "sample_images/horses.jpg",
            "--model",
            "fasterrcnn_mobilenet_v3_large_fpn",
            "--no-pretrained",
            "--score-threshold",
            "0",
            "--max-detections",
            "3",
            "--sheet",
        ],
        "*_sheet_*.png",
    ),
    "segmentation": (
        ["sample_images/horses.jpg", "--model", "deeplabv3_mobilenet_v3_large", "--no-pretrained"],
        "*_overlay.png",
    ),
}


def gradcam_explain(args: list[str], out: Path) -> None:
    command = [sys.executable, "-m", "gradcam_cli", "explain", *args, "--outputs", "overlay", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")


def save_small(source: Path, target: Path) -> None:
    """At most `WIDTH` pixels wide, dithered to 256 colours."""
    with Image.open(source) as image:
        rgb = image.convert("RGB")
        if rgb.width > WIDTH:
            rgb = rgb.resize((WIDTH, round(rgb.height * WIDTH / rgb.width)), Image.Resampling.LANCZOS)
        palette = rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(target, optimize=True)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB")


def main(names: list[str]) -> None:
    FIGURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name in names or list(COMMANDS):
            args, keep = COMMANDS[name]
            out = Path(work) / name
            gradcam_explain(args, out)
            first = sorted(out.glob(keep))[0]  # the first slot: the top class, the largest segment, ...
            save_small(first, FIGURES / f"{name}.png")


if __name__ == "__main__":
    main(sys.argv[1:])
