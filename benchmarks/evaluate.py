"""What `gradcam evaluate` costs next to `gradcam explain` on the same images.

Makes N small labelled photos from the hand-labelled sample photos (random crops that keep the
labelled objects, resized to 64..160 px, boxes carried along), then runs, each in a fresh process
(`python -m gradcam_cli`, start-up included) and alternating which goes first:

  * `gradcam explain DIR --method A --method B`: every output (heatmap, overlay, guided, bbox);
  * `gradcam explain DIR --method A --method B --outputs bbox`: the least explain does (no guided image);
  * `gradcam evaluate DIR -a boxes.csv --method A --method B`: localisation metrics, faithfulness off;

and prints the wall times and the ratios evaluate / explain (the target: at most 1.5).

    python benchmarks/evaluate.py                  # 1,000 photos, one round
    python benchmarks/evaluate.py --count 200 --rounds 2 --device cuda
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
BOXES = ROOT / "tests" / "data" / "sample_boxes.csv"


def make_labelled_photos(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` crops of the labelled photos with their boxes; returns the annotation CSV."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    labelled: dict[str, list[tuple[str, list[float]]]] = {}
    with open(BOXES) as fh:
        for row in csv.DictReader(fh):
            labelled.setdefault(row["file"], []).append(
                (row["class"], [float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            )
    sources = {name: Image.open(SAMPLES / name).convert("RGB") for name in labelled}
    names = sorted(labelled)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        name = names[i % len(names)]
        img = sources[name]
        # A crop holding every labelled box of the photo, grown by a random margin on each side.
        boxes = np.array([b for _, b in labelled[name]])
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
        left, top = rng.uniform(0, x0), rng.uniform(0, y0)
        right, bottom = rng.uniform(x1, img.width), rng.uniform(y1, img.height)
        side = int(rng.integers(64, 161))
        scale = side / max(right - left, bottom - top)
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        img.resize(size, Image.Resampling.BILINEAR, box=(left, top, right, bottom)).save(
            folder / f"p{i:05d}.jpg", quality=90
        )
        for label, (bx0, by0, bx1, by1) in labelled[name]:
            rows.append(
                [
                    f"p{i:05d}.jpg",
                    label,
                    *(
                        round(v, 2)
                        for v in ((bx0 - left) * scale, (by0 - top) * scale, (bx1 - left) * scale, (by1 - top) * scale)
                    ),
                ]
            )
    path = folder.parent / "boxes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "class", "x0", "y0", "x1", "y1"])
        writer.writerows(rows)
    return path


def timed(args: list[str]) -> float:
    """Wall seconds of one `gradcam` run in a fresh process (start-up included); fails loudly."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradcam_cli", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"gradcam {' '.join(args[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--methods", default="gradcam,gradcampp")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, device {args.device}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="gradcam-evaluate-bench-"))
    try:
        photos = tmp / "photos"
        boxes = make_labelled_photos(photos, args.count)
        common = [str(photos), "-b", args.batch_size, "--device", args.device, "--quiet"]
        for m in args.methods.split(","):
            common += ["--method", m]
        runs = {
            "explain (all outputs)": lambda out: ["explain", *common, "-o", str(out)],
            "explain --outputs bbox": lambda out: ["explain", *common, "--outputs", "bbox", "-o", str(out)],
            "evaluate": lambda out: ["evaluate", *common, "-a", str(boxes), "-o", str(out)],
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                out = tmp / f"out-{r}-{len(times[name])}-{name.split()[0]}"
                times[name].append(timed(runs[name](out)))
                shutil.rmtree(out, ignore_errors=True)
                print(f"  round {r + 1}: {name}: {times[name][-1]:.1f}s", flush=True)
        median = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"\n{args.count} photos (64-160 px), methods {args.methods}, --batch-size {args.batch_size}, "
            f"medians of {args.rounds} round(s), start-up included:"
        )
        for name, seconds in median.items():
            print(f"  {name:<24} {seconds:8.1f} s  {args.count / seconds:6.1f} images/s")
        for name in ("explain (all outputs)", "explain --outputs bbox"):
            print(f"  evaluate / {name:<22} {median['evaluate'] / median[name]:.2f}x (target <= 1.5)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
