#!/usr/bin/env python
"""Threads on a shared machine: ``gradcam explain`` on the sample photos, quiet and beside a competing load.

    .venv/bin/python benchmarks/threads.py [--runs 5] [--load 2] [--json out.json]

For each condition (quiet; ``--load`` busy-loop processes, one per core by default, started before and
stopped after the runs) the script runs, interleaved round by round, each in its own process:

  * ``default``: ``gradcam explain`` as it comes (passive OpenMP waits, threads = the cores not busy);
  * ``--threads 1``;
  * ``spinning, all cores``: PyTorch's own default (OpenMP's spinning waits, one thread per core),
    ``OMP_WAIT_POLICY=ACTIVE gradcam explain --threads N``.

and reports the median "explain phase" of the summary line (the model's work, start-up left out), its
range, and the wall time of the process. Figures from this script are quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASE = re.compile(r"explain phase ([\d.]+) s .*wall time ([\d.]+) s")


def settings(cores: int) -> dict[str, tuple[list[str], dict]]:
    return {
        "default": ([], {}),
        "--threads 1": (["--threads", "1"], {}),
        f"spinning, {cores} threads": (["--threads", str(cores)], {"OMP_WAIT_POLICY": "ACTIVE"}),
    }


def run_once(folder: Path, out: Path, extra: list[str], env: dict) -> tuple[float, float]:
    gradcam = Path(sys.executable).with_name("gradcam")
    command = [str(gradcam), "explain", str(folder), "-o", str(out), "--overwrite", "--outputs", "heatmap,overlay"]
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GRADCAM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run(command + extra, capture_output=True, text=True, env={**clean, **env})
    found = PHASE.search(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"gradcam failed ({done.returncode}): {done.stderr[-500:]}")
    return float(found.group(1)), float(found.group(2))


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(folder: Path, tmp: Path, runs: int, load: int, cores: int) -> dict:
    loops = busy_loops(load)
    time.sleep(1.0 if load else 0.0)  # the load is under way before the first run
    try:
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in settings(cores)}
        for _ in range(runs):
            for name, (extra, env) in settings(cores).items():
                times[name].append(run_once(folder, tmp / "out", extra, env))
    finally:
        for p in loops:
            p.kill()
            p.wait()
    return {
        name: {
            "phase_median": statistics.median(p for p, _ in v),
            "phase_min": min(p for p, _ in v),
            "phase_max": max(p for p, _ in v),
            "wall_median": statistics.median(w for _, w in v),
        }
        for name, v in times.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--load", type=int, default=None, help="busy-loop processes (default: one per core)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = cores if args.load is None else args.load
    results = {}
    with tempfile.TemporaryDirectory(prefix="gradcam-threads-") as tmp:
        folder = Path(tmp) / "photos"
        shutil.copytree(ROOT / "sample_images", folder, ignore=shutil.ignore_patterns("*.md"))
        for label, busy in (("quiet", 0), (f"{load} busy loops", load)):
            results[label] = measure(folder, Path(tmp), args.runs, busy, cores)
    print(
        f"gradcam explain on the {len(list((ROOT / 'sample_images').glob('*.*g')))} sample photos, {cores} cores, "
        f"{args.runs} runs each, interleaved; explain phase in seconds (median, min-max), wall time median"
    )
    for label, found in results.items():
        print(f"\n{label}")
        for name, r in found.items():
            print(
                f"  {name:<22} {r['phase_median']:6.2f} s ({r['phase_min']:.2f}-{r['phase_max']:.2f})"
                f"   wall {r['wall_median']:.2f} s"
            )
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "runs": args.runs, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
