#!/usr/bin/env python
"""What keeping freed memory (``gradcam_cli.allocator``) is worth, measured in child processes.

    .venv/bin/python benchmarks/allocator.py [--model NAME] [--batch-size 8] [--launches 3] [--rounds 12]

The setting is process-wide, so each side runs in its own process: the child loads the
model as ``gradcam`` does, runs ``explain_batch`` with the guided image on a random batch
``--rounds`` times (2 more first, unmeasured), and reports the median ms per image and
the minor page faults per pass. The parent alternates the two settings ``--launches``
times each and prints the medians over launches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
mode, model_name, batch, rounds = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), int(sys.argv[4])
from gradcam_cli.allocator import keep_freed_memory
kept = keep_freed_memory() if mode == "kept" else False
import torch
from gradcam_cli import default_layer, explain_batch, load_model, resolve_layer, trace_layers
torch.set_num_threads(2)
torch.manual_seed(0)
loaded = load_model(model_name, pretrained=model_name is None)
model = loaded.model
infos = trace_layers(model, loaded.preprocess.input_size)
path = default_layer(model, infos)
layers = {path: resolve_layer(model, path, infos, path)}
x = torch.randn(batch, 3, *loaded.preprocess.input_size)
times, faults = [], []
for i in range(rounds + 2):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    explain_batch(model, x, layers, guided=True)
    dt = time.perf_counter() - t0
    if i >= 2:
        times.append(dt * 1e3 / batch)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": kept, "ms_per_image": statistics.median(times),
                  "faults_per_pass": statistics.median(faults)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="default: the bundled EfficientNet-Lite0 with its weights")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--launches", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for i in range(args.launches):
        for mode in ("default", "kept") if i % 2 == 0 else ("kept", "default"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, mode, args.model, str(args.batch_size), str(args.rounds)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    name = args.model or "default model (EfficientNet-Lite0)"
    print(
        f"{name}, batch {args.batch_size}, guided explain_batch, 2 threads; medians of {args.launches} launches "
        f"x {args.rounds} passes"
    )
    med = {m: statistics.median(r["ms_per_image"] for r in rs) for m, rs in runs.items()}
    for mode, rs in runs.items():
        label = "C library defaults" if mode == "default" else "freed memory kept (gradcam)"
        each = ", ".join(f"{r['ms_per_image']:.1f}" for r in rs)
        print(
            f"   {label:<30} {med[mode]:7.1f} ms/image   page faults per pass "
            f"{statistics.median(r['faults_per_pass'] for r in rs):>9,.0f}   "
            f"(launches: {each})"
        )
    print(f"   kept / default: {med['kept'] / med['default']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
