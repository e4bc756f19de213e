"""Time of each newer CAM-family method relative to Grad-CAM's, on the same images, paired round by round.

    python benchmarks/cam_family.py                        # timm ResNet-18 (random init), 224 px, 1 image
    python benchmarks/cam_family.py --model resnet50 --images 4 --rounds 7 --json cam_family.json

Each round runs Grad-CAM and every method once, in shuffled order, through ``explain_batch`` on the model as
``gradcam`` loads it (BatchNorm folded, channels_last); the figure for a method is the median over rounds of
its time divided by Grad-CAM's time in the same round, so load from other processes largely cancels. Grad-CAM
runs at the same layers as the method: the default layer, or for RefineCAM every stage it fuses (Grad-CAM at
those layers is what it costs to have their maps at all). FullGrad has no layer: it is compared with Grad-CAM
at the default layer. Activation-only methods (KPCA-CAM, FEM) are listed for reference.

Next to ours: the peer's time (pytorch-grad-cam; torchcam for Smooth Grad-CAM++, 4 noisy copies on both
sides), on timm's model as built, and for FullGrad the floor any implementation pays, one forward and one
backward pass through the whole network to the input (Grad-CAM at a late layer back-propagates through the head
only). Peers pick their own targets' classes; the time does not depend on which.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")

GRADIENT_METHODS = ["finercam", "shapleycam", "refinecam", "fullgrad", "smoothgradcampp"]
OTHERS = ["kpcacam", "fem"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--layer", default="layer4")
    p.add_argument("--stages", default="layer2,layer3,layer4", help="the layers RefineCAM fuses")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=",".join(GRADIENT_METHODS + OTHERS))
    p.add_argument("--no-peers", action="store_true", help="time ours only")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args()


def runner(loaded, x, layers: list[str], method: str):
    from gradcam_cli.passes import explain_batch

    modules = {p: loaded.model.get_submodule(p) for p in layers}
    return lambda: explain_batch(loaded.model, x, modules, methods=[method])


def input_gradient_floor(model, x):
    """What any FullGrad must do: one forward pass and one backward pass through the whole network to the input."""

    def run():
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            xx = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xx)[:, 0].sum(), xx)
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)

    return run


def peer(model, x, layers: list[str], method: str, size: int):
    """pytorch-grad-cam's (or for Smooth Grad-CAM++ torchcam's) call for ``method`` on timm's own model, or None."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = {"fullgrad": pgc.FullGrad, "shapleycam": pgc.ShapleyCAM, "finercam": pgc.FinerCAM}
    classes["refinecam"] = pgc.RefineCAM
    if method == "smoothgradcampp":
        from torchcam.methods import SmoothGradCAMpp

        def run_torchcam():
            with SmoothGradCAMpp(model, target_layer=layers[0], input_shape=(3, size, size)) as cam:
                scores = model(x)
                return cam(class_idx=scores.argmax(1).tolist(), scores=scores)

        return run_torchcam
    if method not in classes:
        return None

    def run():
        targets = None if method == "finercam" else [ClassifierOutputTarget(0)] * x.shape[0]
        modules = [] if method == "fullgrad" else [model.get_submodule(p) for p in layers]
        cam = classes[method](model=model, target_layers=modules)
        try:
            return cam(input_tensor=x.clone(), targets=targets)
        finally:
            for base in getattr(cam, "base_cam_per_layer", None) or [getattr(cam, "base_cam", cam)]:
                base.activations_and_grads.release()

    return run


def contenders(args, loaded, plain, x) -> dict[str, dict]:
    """method -> {"gradcam": Grad-CAM at the same layers, "ours": the method, "peer": ..., "floor": ...}."""
    stages = args.stages.split(",")
    out = {}
    for method in args.methods.split(","):
        layers = stages if method == "refinecam" else [args.layer]
        runs = {"gradcam": runner(loaded, x, layers, "gradcam"), "ours": runner(loaded, x, layers, method)}
        other = None if args.no_peers else peer(plain, x, layers, method, args.size)
        if other is not None:
            runs["peer"] = other
        if method == "fullgrad":
            runs["floor"] = input_gradient_floor(loaded.model, x)
        out[method] = runs
    return out


def measure(groups: dict[str, dict], rounds: int, sync) -> dict[str, dict]:
    """Per method and contender: the median over rounds of its time over Grad-CAM's in the same round."""
    ratios = {m: {k: [] for k in runs if k != "gradcam"} for m, runs in groups.items()}
    seconds = {m: {k: [] for k in runs} for m, runs in groups.items()}
    for _ in range(rounds):
        for method in random.sample(list(groups), len(groups)):
            runs = groups[method]
            took = {}
            for name in random.sample(list(runs), len(runs)):
                sync()
                start = time.perf_counter()
                runs[name]()
                sync()
                took[name] = time.perf_counter() - start
            for name, t in took.items():
                seconds[method][name].append(t)
                if name != "gradcam":
                    ratios[method][name].append(t / took["gradcam"])
    return {
        m: {
            "ratio": {k: statistics.median(v) for k, v in ratios[m].items()},
            "seconds": {k: statistics.median(v) for k, v in seconds[m].items()},
            "ratios": ratios[m],
        }
        for m in groups
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    import timm

    from gradcam_cli import load_model

    device = torch.device(args.device)
    loaded = load_model(args.model, pretrained=False, device=device)
    torch.manual_seed(0)
    plain = timm.create_model(args.model, pretrained=False).eval().to(device)
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(3)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    groups = contenders(args, loaded, plain, x)
    for runs in groups.values():  # warm-up: first calls pay for allocations and tracing
        for fn in runs.values():
            fn()
    figures = measure(groups, args.rounds, sync)
    print(f"{args.model} {args.size}px x{args.images} on {args.device}, {args.threads} threads, {args.rounds} rounds")
    print("time / Grad-CAM's at the same layers, same round (median); Grad-CAM's own median time in seconds")
    print(f"{'method':16s} {'ours':>6s} {'peer':>6s} {'floor':>6s} {'Grad-CAM s':>10s}")
    for method, f in figures.items():
        r = f["ratio"]
        cells = [f"{r[k]:6.2f}" if k in r else f"{'-':>6s}" for k in ("ours", "peer", "floor")]
        print(f"{method:16s} {' '.join(cells)} {f['seconds']['gradcam']:10.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "figures": figures}, fh, indent=1)


if __name__ == "__main__":
    main()
