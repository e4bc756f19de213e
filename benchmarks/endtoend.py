#!/usr/bin/env python
"""End to end, as a user runs it: `gradcam explain` on a folder vs a pytorch-grad-cam script.

    .venv/bin/python benchmarks/endtoend.py [--photos 64] [--batch-size 8] [--runs 5] [--view crop] [--keep DIR]

Builds a folder of photos (copies of sample_images/*, resized so the longer side is
300-640 px, seeded), then times, each in its own process, from launch to exit:

  * ``gradcam explain FOLDER -o OUT --overwrite --batch-size 8``
  * ``python benchmarks/pgc_script.py FOLDER OUT2`` (same model and weights, same four PNGs)

with wall and CPU time (user + system of the child, all threads: steadier when the
machine is busy), and the median of ``--runs`` launches of ``gradcam --help`` and
``gradcam layers --model resnet50``, the latter without its layer-table cache (cold:
imports and a trace) and with it (filled by one launch first). Each side also runs once
on a one-photo folder, which separates start-up from the per-photo cost. Neither side
sets torch threads (both get torch's default, or ``--omp-threads``). Wall times include
interpreter start-up, imports and model loading; ``gradcam`` applies its malloc setting
(``gradcam_cli.allocator``) as it always does, the script runs with the C library's.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_images"
GRADCAM = Path(sys.executable).with_name("gradcam")
SUFFIXES = {".jpg", ".jpeg", ".png"}


def build_folder(dest: Path, count: int, seed: int) -> list[tuple[str, tuple[int, int]]]:
    rng = random.Random(seed)
    sources = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in SUFFIXES)
    made = []
    for i in range(count):
        src = sources[i % len(sources)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            longer = rng.randint(300, 640)
            scale = longer / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.Resampling.BICUBIC)
            name = f"{i:03d}_{src.stem}{src.suffix.lower()}"
            im.save(dest / name, quality=92) if src.suffix.lower() in (".jpg", ".jpeg") else im.save(dest / name)
            made.append((name, size))
    return made


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


ENV = dict(os.environ)


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess, float]:
    """Wall seconds, the finished process, and its CPU seconds (user + system, all threads)."""
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    if proc.returncode != 0:
        print(f"!! exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-2000:]}", file=sys.stderr)
    return dt, proc, cpu


def count_pngs(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix == ".png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each side, alternating which goes first (default 1: gradcam, then the script)",
    )
    ap.add_argument("--runs", type=int, default=5, help="launches of `gradcam --help` and `gradcam layers` (median)")
    ap.add_argument(
        "--omp-threads",
        type=int,
        default=None,
        help="set OMP_NUM_THREADS for every command (default: inherited; torch then uses all cores). "
        "On a busy machine 1 avoids OpenMP's pathological slow-down under oversubscription",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--view",
        default=None,
        help="gradcam's --view (default: the CLI's; `crop` sees what the script sees, a 224 crop)",
    )
    ap.add_argument("--keep", type=Path, default=None, help="build the folder and outputs here and keep them")
    args = ap.parse_args()
    if not GRADCAM.exists():
        print(f"no `gradcam` executable next to {sys.executable}", file=sys.stderr)
        return 2

    total0 = time.perf_counter()
    if args.omp_threads is not None:
        ENV["OMP_NUM_THREADS"] = str(args.omp_threads)
    print(
        f"cpu: {os.cpu_count()} cores | load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())} | "
        f"python {sys.executable} | OMP_NUM_THREADS={ENV.get('OMP_NUM_THREADS', 'unset')}"
    )
    tmp_ctx = tempfile.TemporaryDirectory(prefix="gradcam_e2e_") if args.keep is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else args.keep
    try:
        folder, out_ours, out_pgc = root / "photos", root / "out_gradcam", root / "out_pgc"
        for d in (folder, out_ours, out_pgc):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        made = build_folder(folder, args.photos, args.seed)
        sizes = [max(s) for _, s in made]
        print(f"folder: {len(made)} photos from {SAMPLES.relative_to(REPO)}, longer side {min(sizes)}-{max(sizes)} px")

        view = ["--view", args.view] if args.view else []
        ours_cmd = [
            str(GRADCAM),
            "explain",
            str(folder),
            "-o",
            str(out_ours),
            "--overwrite",
            "--batch-size",
            str(args.batch_size),
            *view,
        ]
        pgc_cmd = [sys.executable, str(REPO / "benchmarks" / "pgc_script.py"), str(folder), str(out_pgc)]
        walls: dict[str, list[float]] = {"ours": [], "pgc": []}
        cpus: dict[str, list[float]] = {"ours": [], "pgc": []}
        codes: dict[str, list[int]] = {"ours": [], "pgc": []}
        cmds = {"ours": ours_cmd, "pgc": pgc_cmd}
        for r in range(args.repeats):
            for side in ("ours", "pgc") if r % 2 == 0 else ("pgc", "ours"):
                wall, proc, cpu = timed(cmds[side])
                walls[side].append(wall)
                cpus[side].append(cpu)
                codes[side].append(proc.returncode)
        n_ours, n_pgc = count_pngs(out_ours), count_pngs(out_pgc)
        t_ours, t_pgc = statistics.median(walls["ours"]), statistics.median(walls["pgc"])
        c_ours, c_pgc = statistics.median(cpus["ours"]), statistics.median(cpus["pgc"])
        n = len(made)
        print(
            f"\n   {'command (median of ' + str(args.repeats) + ')':<58} "
            f"{'wall s':>8} {'s/photo':>8} {'CPU s':>8} {'PNGs':>5}"
        )
        ours_command = f"gradcam explain DIR -o OUT --overwrite --batch-size {args.batch_size}" + " ".join(["", *view])
        print(f"   {ours_command:<58} {t_ours:>8.1f} {t_ours / n:>8.3f} {c_ours:>8.1f} {n_ours:>5}")
        print(
            f"   {'python benchmarks/pgc_script.py DIR OUT2':<58} "
            f"{t_pgc:>8.1f} {t_pgc / n:>8.3f} {c_pgc:>8.1f} {n_pgc:>5}"
        )
        print(
            f"   ratio pgc_script / gradcam: wall {t_pgc / t_ours:.2f}x, CPU {c_pgc / c_ours:.2f}x  "
            f"(exit codes {codes['ours']}, {codes['pgc']})"
        )
        if args.repeats > 1:
            print(
                f"   all wall s: gradcam {[round(w, 1) for w in walls['ours']]}, "
                f"pgc {[round(w, 1) for w in walls['pgc']]}"
            )

        # Start-up (interpreter, imports, model build) measured on its own: the same commands on one photo.
        one = root / "one_photo"
        shutil.rmtree(one, ignore_errors=True)
        one.mkdir()
        shutil.copy(folder / made[0][0], one / made[0][0])
        one_cmds = {
            "ours": [
                str(GRADCAM),
                "explain",
                str(one),
                "-o",
                str(root / "one_ours"),
                "--overwrite",
                "--batch-size",
                str(args.batch_size),
                *view,
            ],
            "pgc": [sys.executable, str(REPO / "benchmarks" / "pgc_script.py"), str(one), str(root / "one_pgc")],
        }
        first = {side: timed(cmd)[0] for side, cmd in one_cmds.items()}
        net_ours, net_pgc = t_ours - first["ours"], t_pgc - first["pgc"]
        print(f"   one photo (start-up + 1 image): gradcam {first['ours']:.1f} s, pgc_script {first['pgc']:.1f} s")
        print(
            f"   the other {n - 1} photos ({n}-photo run minus one-photo run): gradcam {net_ours:.1f} s "
            f"({net_ours / (n - 1) * 1e3:.0f} ms/photo), pgc_script {net_pgc:.1f} s "
            f"({net_pgc / (n - 1) * 1e3:.0f} ms/photo): {net_pgc / net_ours:.2f}x"
        )
        if n_ours != 4 * n or n_pgc != 4 * n:
            print(f"   !! expected {4 * n} PNGs on each side")

        startup = {}
        ENV["GRADCAM_CACHE_DIR"] = str(root / "layer_cache")  # a fresh cache: "cold" is really cold
        layers_cmd = [str(GRADCAM), "layers", "--model", "resnet50"]
        for label, cmd in (
            ("gradcam --help", [str(GRADCAM), "--help"]),
            ("gradcam layers --model resnet50 --no-cache", layers_cmd + ["--no-cache"]),
            ("gradcam layers --model resnet50 (cached)", layers_cmd),
        ):
            if "cached" in label:
                timed(cmd)  # the first listing fills the cache
            runs = [timed(cmd)[0] for _ in range(args.runs)]  # wall
            startup[label] = runs
            print(
                f"   {label:<44} median {statistics.median(runs):.2f} s  (min {min(runs):.2f}, "
                f"max {max(runs):.2f}, {len(runs)} runs)"
            )
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    print(
        f"\ntotal {time.perf_counter() - total0:.0f} s | load avg at end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
