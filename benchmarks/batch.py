"""Throughput and memory of `gradcam explain` on folders (issue: batch processing).

Runs the real CLI in child processes, one configuration at a time, and reports:
  * images/s for 64 photos with --batch-size 1, 8, 32 and --workers 0, 2 (all four outputs);
  * peak RSS for 200 and 2,000 small images (flat memory: the two should be close).

    python benchmarks/batch.py            # full run (several minutes on 2 cores)
    python benchmarks/batch.py --quick    # 16 photos, batch 1/8, 200 + 400 images for RSS
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


def make_photos(folder: Path, count: int, small: bool) -> None:
    from PIL import Image

    sources = [Image.open(p).convert("RGB") for p in sorted(SAMPLES.iterdir()) if p.suffix in (".png", ".jpg")]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = sources[i % len(sources)]
        if small:
            img = img.resize((96, 72))
        else:  # varied photo sizes, 320..640 px on the long side
            scale = (320 + 37 * (i % 9)) / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        img.save(folder / f"photo_{i:05d}.jpg", quality=90)


def run_cli(args: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KiB) and exit code of one `gradcam` run in a fresh child process."""
    code = (
        "import resource, sys, json\n"
        "from gradcam_cli.cli import app\n"
        "try:\n    app(sys.argv[1:], standalone_mode=False)\n    rc = 0\n"
        "except SystemExit as e:\n    rc = e.code or 0\n"
        "print(json.dumps({'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 'rc': rc}), file=sys.stderr)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    return seconds, stats["maxrss"], stats["rc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    photos = 16 if args.quick else 64
    batch_sizes = (1, 8) if args.quick else (1, 8, 32)
    rss_counts = (200, 400) if args.quick else (200, 2000)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    try:
        make_photos(tmp / "photos", photos, small=False)
        # Start-up (imports, model build) is part of each run; report it so rates can be read net of it.
        base, _, _ = run_cli(
            [
                "explain",
                str(tmp / "photos" / "photo_00000.jpg"),
                "-o",
                str(tmp / "o0"),
                "--device",
                args.device,
                "--quiet",
                "--overwrite",
            ]
        )
        print(
            f"\nthroughput: {photos} photos (320-640 px), default model, all four outputs; "
            f"one-image run (start-up + 1 image) = {base:.1f}s"
        )
        print(f"{'batch':>5} {'workers':>7} {'wall s':>7} {'images/s':>9} {'images/s net of start-up':>25}")
        for bs in batch_sizes:
            for workers in (0, 2):
                out = tmp / f"o_{bs}_{workers}"
                secs, _, rc = run_cli(
                    [
                        "explain",
                        str(tmp / "photos"),
                        "-o",
                        str(out),
                        "-b",
                        str(bs),
                        "--workers",
                        str(workers),
                        "--device",
                        args.device,
                        "--quiet",
                    ]
                )
                assert rc == 0, rc
                net = photos / max(1e-9, secs - base) if secs > base else float("nan")
                print(f"{bs:>5} {workers:>7} {secs:>7.1f} {photos / secs:>9.2f} {net:>25.2f}")
                shutil.rmtree(out)
        print("\npeak RSS: small 96x72 photos, --batch-size 8 --workers 2, outputs heatmap,overlay")
        print(f"{'images':>6} {'wall s':>7} {'peak RSS MiB':>13}")
        for count in rss_counts:
            folder = tmp / f"small_{count}"
            make_photos(folder, count, small=True)
            secs, rss, rc = run_cli(
                [
                    "explain",
                    str(folder),
                    "-o",
                    str(tmp / f"rss_{count}"),
                    "-b",
                    "8",
                    "--workers",
                    "2",
                    "--outputs",
                    "heatmap,overlay",
                    "--device",
                    args.device,
                    "--quiet",
                ]
            )
            assert rc == 0, rc
            print(f"{count:>6} {secs:>7.1f} {rss / 1024:>13.0f}")
            shutil.rmtree(folder)
            shutil.rmtree(tmp / f"rss_{count}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
