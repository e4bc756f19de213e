"""Time per image of every method, against Grad-CAM and against pytorch-grad-cam / torchcam on the same images.

    python benchmarks/methods.py                      # timm ResNet-18 (random init), 224 px, layer4, 1 image
    python benchmarks/methods.py --images 2 --rounds 5 --json methods.json
    python benchmarks/methods.py --device cuda        # on a GPU

All contenders run in one process, interleaved round by round in shuffled order (2 threads
unless --threads). Ours runs the model as ``gradcam`` loads it (BatchNorm folded,
channels_last); the peers run timm's model as built, as their users would. Each peer runs
with our method's matching convention switched on (see the method files), and the
largest difference between the min-max scaled maps is printed next to the times.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

METHOD_ORDER = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigengradcam",
    "eigencam",
    "cam",
    "scorecam",
    "ablationcam",
    "occlusion",
]
# Our settings that reproduce each peer's convention (method files say why they differ).
PGC_SETTINGS = {"gradcampp_eps": 1e-6, "xgradcam_eps": 1e-7, "scorecam_convention": "pytorch-grad-cam"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--layer", default="layer4")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="perturbed copies per pass, ours and peers alike")
    p.add_argument("--methods", default=",".join(METHOD_ORDER))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-peers", action="store_true", help="time ours only")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args()


def scaled(maps) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32)) if not isinstance(maps, torch.Tensor) else maps
    t = t.detach().float().cpu()
    flat = t.flatten(-2)
    low, high = flat.min(-1).values[..., None, None], flat.max(-1).values[..., None, None]
    return (t - low) / (high - low).clamp_min(1e-12)


def ours_fn(loaded, x, layer, method, batch_size):
    from gradcam_cli.passes import explain_batch

    module = loaded.model.get_submodule(layer)
    return lambda: explain_batch(
        loaded.model, x, {layer: module}, methods=[method], settings=PGC_SETTINGS, batch_size=batch_size
    )


def pgc_fn(model, x, layer, method, classes, hw, batch_size):
    """pytorch-grad-cam's call for ``method``, or None where it has none."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes_ = {
        "gradcam": pgc.GradCAM,
        "gradcampp": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "eigengradcam": pgc.EigenGradCAM,
        "eigencam": pgc.EigenCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
    }
    if method not in classes_:
        return None
    targets = [ClassifierOutputTarget(int(c)) for c in classes]

    def run():
        kw = {"batch_size": batch_size} if method == "ablationcam" else {}
        with classes_[method](model=model, target_layers=[model.get_submodule(layer)], **kw) as cam:
            cam.batch_size = batch_size  # ScoreCAM reads it
            cam.get_target_width_height = lambda _t: (hw[1], hw[0])
            return cam(input_tensor=x, targets=targets)

    return run


def torchcam_fn(model, x, layer, method, classes, batch_size):
    from torchcam import methods as tc

    classes_ = {
        "gradcam": tc.GradCAM,
        "gradcampp": tc.GradCAMpp,
        "xgradcam": tc.XGradCAM,
        "layercam": tc.LayerCAM,
        "scorecam": tc.ScoreCAM,
        "cam": tc.CAM,
    }
    if method not in classes_:
        return None

    def run():
        kw = {"batch_size": batch_size} if method == "scorecam" else {}
        with classes_[method](model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kw) as cam:
            with torch.set_grad_enabled(method not in ("scorecam", "cam")):
                scores = model(x)
            return cam(class_idx=[int(c) for c in classes], scores=scores, normalized=False)[0]

    return run


def captum_occlusion_fn(model, x, classes):
    from captum.attr import Occlusion

    baselines = x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    return lambda: Occlusion(model).attribute(
        x,
        sliding_window_shapes=(3, 32, 32),
        strides=(3, 16, 16),
        baselines=baselines,
        target=torch.as_tensor(classes, device=x.device),
    )


def build(args, method):
    import timm

    from gradcam_cli import load_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    plain = timm.create_model(args.model, pretrained=False).eval().to(device)
    torch.manual_seed(0)
    loaded = load_model(args.model, pretrained=False, device=device)
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(3)).to(device)
    layer = "input" if method == "occlusion" else args.layer
    ours = ours_fn(loaded, x, args.layer, method, args.batch_size)
    result = ours()
    classes = result.classes[:, 0].tolist()
    ours_map = scaled(result.maps[method, layer][:, 0])
    peers = {}
    if not args.no_peers:
        hw = tuple(ours_map.shape[-2:])
        peers["pytorch-grad-cam"] = (
            pgc_fn(copy.deepcopy(plain), x, args.layer, method, classes, hw, args.batch_size)
            if method != "occlusion"
            else None
        )
        peers["torchcam"] = torchcam_fn(copy.deepcopy(plain), x, args.layer, method, classes, args.batch_size)
        peers["captum"] = captum_occlusion_fn(copy.deepcopy(plain), x, classes) if method == "occlusion" else None
    return ours, ours_map, {k: v for k, v in peers.items() if v is not None}


def agreement(ours_map, peer, name, method) -> float | None:
    out = peer()
    if name == "captum":
        out = torch.relu(out[:, 0])
    theirs = scaled(out)
    if method in ("eigencam", "eigengradcam") and name == "pytorch-grad-cam":
        return None  # the SVD's sign is arbitrary in theirs (tests/methods/test_gradient_oracles.py compares up to it)
    if name == "torchcam" and method == "gradcampp":
        return None  # torchcam 0.5 weighs by g^2 ReLU(g) (see methods/gradcampp.py); timed, not compared
    if name == "torchcam" and method == "scorecam":
        return None  # compared with its own convention in the tests; here ours runs pytorch-grad-cam's
    return (scaled(ours_map) - theirs).abs().max().item() if theirs.shape == ours_map.shape else None


def measure(fns: dict, rounds: int, sync) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        order = list(fns)
        random.shuffle(order)
        for name in order:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    gradcam_s = None
    for method in args.methods.split(","):
        ours, ours_map, peers = build(args, method)
        diffs = {name: agreement(ours_map, fn, name, method) for name, fn in peers.items()}
        fns = {"ours": ours, **peers}
        measure(fns, 1, sync)  # warm-up
        med = measure(fns, args.rounds, sync)
        if method == "gradcam":
            gradcam_s = med["ours"]
        row = {
            "method": method,
            "ours_ms_per_image": 1000 * med["ours"] / args.images,
            "x_gradcam": med["ours"] / gradcam_s if gradcam_s else None,
        }
        for name in peers:
            row[f"{name}_ms_per_image"] = 1000 * med[name] / args.images
            row[f"{name}_over_ours"] = med[name] / med["ours"]
            row[f"{name}_max_diff"] = diffs[name]
        rows.append(row)
        print(format_row(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, fh, indent=1)


def format_row(row: dict) -> str:
    parts = [f"{row['method']:<13} ours {row['ours_ms_per_image']:9.1f} ms/img"]
    if row["x_gradcam"] is not None:
        parts.append(f"x gradcam {row['x_gradcam']:5.2f}")
    for peer in ("pytorch-grad-cam", "torchcam", "captum"):
        if f"{peer}_ms_per_image" in row:
            diff = row[f"{peer}_max_diff"]
            parts.append(
                f"{peer} {row[f'{peer}_ms_per_image']:9.1f} ms/img ({row[f'{peer}_over_ours']:6.2f}x ours"
                + (f", max|diff| {diff:.1e})" if diff is not None else ")")
            )
    return " | ".join(parts)


if __name__ == "__main__":
    main()
