"""What `gradcam compare` costs next to `gradcam explain`, and how alike two runs of one model are.

Makes N small photos from the sample photos (random crops, flips, 64..160 px), then, each in a fresh process
(`python -m gradcam_cli`, start-up included):

  1. golden maps: `gradcam explain DIR --save-raw -o golden` and a candidate run `-o candidate` (the same model
     with GRADCAM_THREADS=2 and =1: the float noise between thread counts is the comparison's subject);
  2. `gradcam compare golden candidate`: no model runs; its wall time against the golden explain's, the faster
     one with 2 threads (the target: under a tenth);
  3. the one-process form, `gradcam compare DIR --weights A --against-weights B`, against one
     `gradcam explain DIR --weights A` on the first M photos, in alternating rounds (the target: at most 2x);
  4. the spread between the thread counts: the lowest value of every metric over the pairs of step 1,
     Spearman and SSIM as 1 - value (unrounded, from the Python API).

    python benchmarks/compare.py                      # 1,000 photos; 200 for the one-process form, 2 rounds
    python benchmarks/compare.py --count 200 --one-process-count 50 --rounds 1
    python benchmarks/compare.py --one-process-count 0   # steps 1, 2 and 4 only

Wall seconds, and CPU seconds as a check where others load the machine (their ratio moves less with that load).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
METHODS = "gradcam,layercam"


def make_photos(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` small photos: random crops of the samples, some mirrored, the longer side 64..160 px."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(SAMPLES.iterdir()) if p.suffix in (".png", ".jpg")]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.uniform(0, w - cw + 1)), int(rng.uniform(0, h - ch + 1))
        crop = img.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = int(rng.integers(64, 161))
        scale = side / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
        crop.save(folder / f"photo{i:05d}.png")


def gradcam(*args, threads: int | None = None) -> float:
    """Wall seconds of ``gradcam ARGS`` in a fresh process (exit 0 or 1 accepted: 1 is a verdict); its CPU
    seconds (user + system) are added to `CPU` under the command's name."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads is not None:
        env["GRADCAM_THREADS"] = str(threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradcam_cli", *map(str, args), "-q"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[str(args[0])] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode not in (0, 1):
        raise SystemExit(f"gradcam {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return seconds


CPU: dict[str, float] = {}  # CPU seconds of the last run of each command: a check on a machine others load


def save_weights(folder: Path) -> tuple[Path, Path]:
    """The bundled EfficientNet-Lite0 weights (A), and the same with the last stage re-initialised (B)."""
    import torch
    from safetensors.torch import save_file

    from gradcam_cli import load_model

    model = load_model(fold_bn=False, memory_format="contiguous").model
    paths = folder / "a.safetensors", folder / "b.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths[0]))
    torch.manual_seed(0)
    for name in ("blocks.6", "conv_head", "bn2"):
        for module in model.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths[1]))
    return paths


def spread(golden: Path, candidate: Path) -> dict[str, float]:
    """The lowest value of each metric over the pairs (1 - value for Spearman and SSIM), unrounded."""
    from gradcam_cli import compare

    result = compare(golden, candidate)
    lowest = {}
    for metric in ("spearman", "ssim", "top10_iou", "top25_iou", "box_iou", "same_class"):
        values = [p.metrics[metric] for p in result.pairs if p.metrics[metric] is not None]
        lowest[metric] = min(values)
    changes = [
        abs(p.metrics["probability_change"]) for p in result.pairs if p.metrics["probability_change"] is not None
    ]
    equal = sum(1 for p in result.pairs if p.metrics["spearman"] == 1.0 and p.metrics["ssim"] == 1.0)
    return {
        "pairs": len(result.pairs),
        "bit-equal maps (spearman and ssim exactly 1)": equal,
        "1 - lowest spearman": 1 - lowest["spearman"],
        "1 - lowest ssim": 1 - lowest["ssim"],
        **{f"lowest {m}": lowest[m] for m in ("top10_iou", "top25_iou", "box_iou", "same_class")},
        "largest |probability change|": max(changes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--one-process-count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="gradcam-compare-bench-") as tmp:
        root = Path(tmp)
        make_photos(root / "photos", args.count)
        explain = ["explain", root / "photos", "--method", METHODS, "--save-raw"]
        golden_s = gradcam(*explain, "-o", root / "golden", threads=2)  # every core: the faster explain
        candidate_s = gradcam(*explain, "-o", root / "candidate", threads=1)
        golden_cpu = CPU["explain"]
        compare_s = gradcam(
            "compare", root / "golden", root / "candidate", "-o", root / "cmp", "--fail-under", "spearman=0.999"
        )
        print(
            f"{args.count} photos, methods {METHODS}: explain --save-raw {golden_s:.1f} s (2 threads; {candidate_s:.1f}"
            f" s with 1); compare {compare_s:.1f} s = {compare_s / golden_s:.3f} of the 2-thread explain (target < 0.1)"
        )
        print(
            f"  CPU seconds: explain {golden_cpu:.1f}, compare {CPU['compare']:.1f} = {CPU['compare'] / golden_cpu:.3f}"
        )
        for name, value in spread(root / "golden", root / "candidate").items():
            print(f"  threads 1 vs 2: {name}: {value:.3g}")
        if args.one_process_count > 0:
            _one_process(root, args.one_process_count, args.rounds)


def _one_process(root: Path, count: int, rounds: int) -> None:
    """The one-process form against one explain run, on ``count`` photos, in alternating rounds."""
    subset = root / "subset"
    subset.mkdir()
    for path in sorted((root / "photos").iterdir())[:count]:
        (subset / path.name).symlink_to(path)
    a, b = save_weights(root)
    model = ["--model", "tf_efficientnet_lite0", "--no-pretrained", "--weights", a, "--method", METHODS]
    ratios = []
    for r in range(rounds):
        runs = {
            "explain": ["explain", subset, *model, "-o", root / f"e{r}"],
            "compare": ["compare", subset, *model, "--against-weights", b, "-o", root / f"c{r}"],
        }
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        seconds = {name: gradcam(*runs[name]) for name in order}
        ratios.append(seconds["compare"] / seconds["explain"])
        print(
            f"round {r + 1}: explain {seconds['explain']:.1f} s, one-process compare {seconds['compare']:.1f} s "
            f"= {ratios[-1]:.2f}x"
        )
    print(f"one-process compare / explain on {count} photos: median {statistics.median(ratios):.2f}x (target <= 2)")


if __name__ == "__main__":
    main()
