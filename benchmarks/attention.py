#!/usr/bin/env python
"""What the transformer-native methods and the input attributions cost, as paired ratios.

Run from the repository root::

    .venv/bin/python benchmarks/attention.py                       # ViT-S/16 at 224, batch 1, 1 thread
    .venv/bin/python benchmarks/attention.py --model deit_small_patch16_224 --batch-size 4 --json out.json

Method: one process, ``--threads`` torch threads, a timm model at random init (seed 0; the cost does not depend
on the weights). Every round runs each contender once, in a freshly shuffled order (seeded), after ``--warmup``
unmeasured rounds; a contender's figure is the median over rounds of its time divided by its reference's time in
the same round (the two ran back to back, so load from other processes on the machine mostly cancels).

Contenders and the reference each is compared with:

  forward          plain ``torch.inference_mode()`` forward of the model as the user holds it (fused attention)
  gradcam          Grad-CAM at the default layer (the last block), ``explain_batch``            ref: forward
  gradcam@first    Grad-CAM at the first block's norm: a backward pass through every block      ref: forward
  rollout          attention rollout (unfused attention, no graph)                              ref: forward
  chefer           Chefer's rule (a backward pass to the first attention block)     ref: gradcam, gradcam@first
  legrad           LeGrad (one short backward per block, through that block only)   ref: gradcam, gradcam@first
  inputxgradient   Input x Gradient (a backward pass to the input)                  ref: gradcam, gradcam@first
  integratedgradients, smoothgrad, vargrad: ``S`` path points / noisy copies, each one forward and one backward
                   of the whole network; the figure is per point, time / S          ref: gradcam, gradcam@first
  captum IG        captum's ``IntegratedGradients`` with the same S points (its own batching), per point

Every method runs through ``explain_batch``, the code path of ``gradcam explain`` and the Python API, minus
decoding and writing files.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradcam_cli.model.layers import default_layer, layer_layouts, trace_layers  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

PER_POINT = ("integratedgradients", "smoothgrad", "vargrad", "captum IG")
ATTRIBUTION_METHODS = ("chefer", "legrad", "inputxgradient", *PER_POINT)


def contenders(model, x, points: int) -> dict:
    size = tuple(x.shape[-2:])
    last = default_layer(model, trace_layers(model, size))
    first = "blocks.0.norm1"
    layers = {p: model.get_submodule(p) for p in (last, first)}
    layouts = layer_layouts(model, layers, size)
    settings = {"ig_steps": points, "noise_samples": points, "ig_baseline": "black"}

    def ours(methods, *paths):
        chosen = {p: layers[p] for p in paths}
        return lambda: explain_batch(model, x, chosen, methods=methods, layouts=layouts, settings=settings)

    def forward():
        with torch.inference_mode():
            return model(x)

    def captum_ig():
        from captum.attr import IntegratedGradients

        with torch.inference_mode():
            classes = model(x).argmax(dim=1)
        return IntegratedGradients(model).attribute(x, target=classes, n_steps=points, internal_batch_size=x.shape[0])

    found = {
        "forward": forward,
        "gradcam": ours(["gradcam"], last),
        "gradcam@first": ours(["gradcam"], first),
        "captum IG": captum_ig,
    }
    found.update({m: ours([m]) for m in ("rollout", *ATTRIBUTION_METHODS[:-1])})
    return found, last


def measure(fns: dict, rounds: int, warmup: int, seed: int = 0) -> dict[str, list[float]]:
    times = {name: [] for name in fns}
    order, rng = list(fns), random.Random(seed)
    for r in range(warmup + rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            fns[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def paired(times: dict, name: str, reference: str, per: int = 1) -> float:
    return statistics.median(t / per / ref for t, ref in zip(times[name], times[reference]))


def report(times: dict, points: int) -> dict:
    rows = {}
    for name in times:
        per = points if name in PER_POINT else 1
        row = {"median_ms": 1000 * statistics.median(times[name]) / per, "per": "point" if per > 1 else "batch"}
        row["vs_forward"] = paired(times, name, "forward", per)
        if name in ATTRIBUTION_METHODS:
            row["vs_gradcam"] = paired(times, name, "gradcam", per)
            row["vs_gradcam_first"] = paired(times, name, "gradcam@first", per)
        rows[name] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--points", type=int, default=8, help="IG path points and SmoothGrad/VarGrad noisy copies")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import timm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False, img_size=args.size).eval().to(args.device)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=args.device)
    fns, last = contenders(model, x, args.points)
    rows = report(measure(fns, args.rounds, args.warmup), args.points)
    where = f"{args.model}, {args.size}px, batch {args.batch_size}, {args.device}, {args.threads} thread(s)"
    print(f"{where}; default layer {last}; S = {args.points}; medians of paired ratios over {args.rounds} rounds")
    print(f"{'contender':<20} {'ms':>9} {'per':>6} {'x forward':>10} {'x gradcam':>10} {'x gradcam@first':>16}")
    for name, row in rows.items():
        ratios = [row.get(k) for k in ("vs_gradcam", "vs_gradcam_first")]
        cells = " ".join(f"{v:>{w}.2f}" if v is not None else " " * w for v, w in zip(ratios, (10, 16)))
        print(f"{name:<20} {row['median_ms']:>9.1f} {row['per']:>6} {row['vs_forward']:>10.2f} {cells}")
    if args.json:
        args.json.write_text(json.dumps({"setup": where, "default_layer": last, "points": args.points, "rows": rows}))


if __name__ == "__main__":
    main()
