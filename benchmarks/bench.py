#!/usr/bin/env python
"""Grad-CAM cost on CPU: our engine and pipeline against a plain forward and other libraries.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py --quick          # ResNet-50, batch 1, last layer (< 2 min)
    .venv/bin/python benchmarks/bench.py                  # every model x batch x layer (long)
    .venv/bin/python benchmarks/bench.py --models resnet50 --batch-sizes 1,8 --json out.json

Method: one process, torch (and OpenCV) threads fixed by ``--threads``. For each
configuration (model, batch size, layer) every contender runs once per round in a
freshly shuffled order (seeded), after ``--warmup`` unmeasured rounds; the table gives
the median and the spread (IQR and min-max) over the measured rounds, per image, and
the ratio of each median to the plain forward (a)'s median. "paired" is the median of
the per-round ratios x/a (each round's contenders ran back to back, so this ratio
cancels slow drifts of the machine's load).

Contenders (all start from the same preprocessed batch ``x`` except (c) and (e), which
start from the decoded RGB uint8 photo and include preprocessing and PNG writing):

  a  plain ``torch.no_grad()`` forward (the floor)
  b  ours: ``explain_batch(model, x, {layer: module})`` (Grad-CAM map only, no guided)
  c  ours: ``Explainer.explain_arrays([photo]*B)`` with all four outputs (guided on) and
     ``planned_files`` + ``write_explanation`` of the four PNGs at the photo's resolution
  d  pytorch-grad-cam ``GradCAM(model, [layer])(x, targets=None)``
  e  pytorch-grad-cam as its user gets our four files: GradCAM + GuidedBackpropReLUModel
     (one call per image: it explains image 0 only), ``show_cam_on_image``,
     ``deprocess_image``, cv2 resize to the photo, cv2.rectangle box, cv2.imwrite
  f  torchcam ``GradCAM(model, target_layer=path)``: grad-enabled forward, then
     ``cam_extractor(class_idx, scores)``
  g  captum ``LayerGradCam(model, layer).attribute(x, target=classes)`` (classes are
     computed once outside the timing: captum needs them given; a real user pays one
     more forward to get them)

  h  plain ``torch.no_grad()`` forward of the model as ``gradcam`` loads it: BatchNorm
     folded into the convolutions and the channels_last layout where ``load_model``
     picks it (the same function, computed faster); listed only when that model differs
     from timm's, so (b)/(h) and (c)/(h) are the ratios on the very same model

(a) and the other libraries (d-g) run the model as timm builds it (contiguous, BatchNorm
separate); ours (b, c, h) run it as ``gradcam`` loads it. Every library gets
its own deep copy of the model (pytorch-grad-cam fills ``.grad`` and its guided model
swaps ReLU modules); ours runs on the original, which is checked unchanged
(parameters, ``requires_grad`` flags, no ``.grad``, module types) afterwards.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PHOTO = REPO / "sample_images" / "dogs.png"

MODELS = {
    # key: (load_model name, pretrained, intermediate layer, description)
    "resnet50": ("resnet50", False, "layer3", "timm resnet50, random init (torch seed 0)"),
    "lite0": (None, True, "blocks.5", "timm tf_efficientnet_lite0, bundled ImageNet weights"),
    "convnext_tiny": ("convnext_tiny", False, "stages.2", "timm convnext_tiny, random init (torch seed 0)"),
}
MODEL_ALIASES = {
    "tf_efficientnet_lite0": "lite0",
    "efficientnet_lite0": "lite0",
    "convnext": "convnext_tiny",
    "resnet": "resnet50",
}

CONTENDERS = {
    "a": "plain no_grad forward",
    "h": "plain forward, our model",
    "b": "ours explain_batch (map)",
    "c": "ours Explainer + 4 PNGs",
    "d": "pytorch-grad-cam GradCAM",
    "e": "pytorch-grad-cam + GB + 4 PNGs",
    "f": "torchcam GradCAM",
    "g": "captum LayerGradCam",
}


# --- machine -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    import cv2
    import numpy
    import torch

    versions = {"torch": torch.__version__, "numpy": numpy.__version__, "opencv": cv2.__version__}
    for mod in ("timm", "torchvision", "captum", "torchcam"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - version is informative only
            versions[mod] = "?"
    try:
        from importlib.metadata import version

        versions["grad-cam"] = version("grad-cam")
    except Exception:
        versions["grad-cam"] = "?"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "requested_threads": threads,
        "loadavg_start": os.getloadavg(),
    }


# --- stats -------------------------------------------------------------------------------


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def summarize(times: dict[str, list[float]], batch: int) -> dict[str, dict]:
    out = {}
    base = times.get("a")
    for k, ts in times.items():
        per_img = [t * 1e3 / batch for t in ts]
        q1, med, q3 = quartiles(per_img)
        row = {
            "n": len(ts),
            "median_ms_per_image": med,
            "q1": q1,
            "q3": q3,
            "min": min(per_img),
            "max": max(per_img),
            "raw_s": ts,
        }
        if base:
            row["ratio_to_a"] = med / (statistics.median(base) * 1e3 / batch)
            row["paired_ratio_to_a"] = statistics.median(t / b for t, b in zip(ts, base))
        out[k] = row
    return out


# --- contenders --------------------------------------------------------------------------


def model_fingerprint(model) -> dict:
    import torch

    with torch.no_grad():
        sums = [float(p.detach().double().sum()) for p in model.parameters()]
    return {
        "sums": sums,
        "flags": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is not None for p in model.parameters()],
        "types": [type(m).__name__ for m in model.modules()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
        ),
    }


def build_contenders(
    loaded, user_model, layer_path: str, photo, batch: int, outdir: Path, keys: list[str], device: str = "cpu"
):
    """Closures keyed a..g, plus a cleanup function and a sanity check of map agreement."""
    import cv2
    import numpy as np
    import torch
    from PIL import Image

    from gradcam_cli import Explainer, ExplainOptions, explain_batch
    from gradcam_cli.maps.preprocess import to_model_input
    from gradcam_cli.output.files import write_all_atomic
    from gradcam_cli.output.write import encode_outputs, planned_files

    model = loaded.model
    modules = dict(model.named_modules())
    layer = modules[layer_path]
    photos = [photo] * batch
    x = torch.stack([to_model_input(photo, loaded.preprocess)[0] for _ in range(batch)]).to(device)
    with torch.no_grad():
        top1 = model(x).argmax(1)
    classes = [int(c) for c in top1]
    fns: dict = {}
    cleanups: list = []
    extra: dict = {}

    def copy_of_model():
        m = copy.deepcopy(user_model)
        m.eval()
        return m, dict(m.named_modules())[layer_path]

    if "a" in keys:

        def run_a():
            with torch.no_grad():
                user_model(x)

        fns["a"] = run_a

    if "h" in keys and (loaded.folded or loaded.memory_format != "contiguous"):
        x_ours = x.contiguous(
            memory_format=torch.channels_last if loaded.memory_format == "channels_last" else torch.contiguous_format
        )

        def run_h():
            with torch.no_grad():
                model(x_ours)

        fns["h"] = run_h

    if "b" in keys:

        def run_b():
            return explain_batch(model, x, {layer_path: layer})

        fns["b"] = run_b

    if "c" in keys:
        out_c = outdir / "ours"
        explainer = Explainer(loaded, ExplainOptions(layers=[layer_path], overwrite=True, batch_size=batch))

        opts = explainer.options

        def run_c():
            exps = explainer.explain_arrays(photos)
            for i, (p, es) in enumerate(zip(photos, exps)):
                for e in es:
                    files = planned_files(out_c, f"img{i}", e, opts.outputs, opts.save_raw)
                    write_all_atomic(encode_outputs(p, e, files, opts.alpha))

        fns["c"] = run_c

    if "d" in keys:
        from pytorch_grad_cam import GradCAM

        m_d, layer_d = copy_of_model()
        cam_d = GradCAM(model=m_d, target_layers=[layer_d])
        cleanups.append(cam_d.activations_and_grads.release)

        def run_d():
            return cam_d(input_tensor=x, targets=None)

        fns["d"] = run_d

    if "e" in keys:
        from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
        from pytorch_grad_cam.utils.image import deprocess_image, show_cam_on_image
        from timm.data import create_transform, resolve_data_config

        m_e, layer_e = copy_of_model()
        transform = create_transform(**resolve_data_config({}, model=m_e))
        cam_e = GradCAM(model=m_e, target_layers=[layer_e])
        gb_model = GuidedBackpropReLUModel(model=m_e, device=device)
        cleanups.append(cam_e.activations_and_grads.release)
        out_e = outdir / "pgc"
        out_e.mkdir(parents=True, exist_ok=True)

        def run_e():
            input_tensor = torch.stack([transform(Image.fromarray(p)) for p in photos]).to(device)
            grayscale = cam_e(input_tensor=input_tensor, targets=None)  # (B, 224, 224) in [0, 1]
            probs = torch.softmax(cam_e.outputs.detach(), dim=1)
            for i, p in enumerate(photos):
                h, w = p.shape[:2]
                cls = int(probs[i].argmax())
                cam224 = grayscale[i]
                cam_full = cv2.resize(cam224, (w, h))
                rgb01 = np.float32(p) / 255.0
                heat = cv2.applyColorMap(np.uint8(255 * cam_full), cv2.COLORMAP_JET)
                cv2.imwrite(str(out_e / f"img{i}_heatmap.png"), heat)
                overlay = show_cam_on_image(rgb01, cam_full, use_rgb=True)
                cv2.imwrite(str(out_e / f"img{i}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                gb = gb_model(input_tensor[i : i + 1], target_category=cls)  # (224, 224, 3)
                cam_mask = cv2.merge([cam224, cam224, cam224])
                cam_gb = deprocess_image(cam_mask * gb)
                cv2.imwrite(
                    str(out_e / f"img{i}_guided.png"), cv2.cvtColor(cv2.resize(cam_gb, (w, h)), cv2.COLOR_RGB2BGR)
                )
                mask = np.uint8(cam_full >= 0.5)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                boxed = cv2.cvtColor(p, cv2.COLOR_RGB2BGR)
                if contours:
                    bx, by, bw, bh = cv2.boundingRect(max(contours, key=cv2.contourArea))
                    cv2.rectangle(boxed, (bx, by), (bx + bw, by + bh), (0, 255, 0), 2)
                    cv2.putText(
                        boxed,
                        f"{cls} {float(probs[i, cls]):.2f}",
                        (bx, max(12, by - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX,
                        0.5,
                        (0, 255, 0),
                        1,
                    )
                cv2.imwrite(str(out_e / f"img{i}_bbox.png"), boxed)

        fns["e"] = run_e

    if "f" in keys:
        from torchcam.methods import GradCAM as TorchcamGradCAM

        m_f, _ = copy_of_model()
        tc = TorchcamGradCAM(m_f, target_layer=layer_path)
        cleanups.append(tc.remove_hooks)

        def run_f():
            scores = m_f(x)
            idx = scores.argmax(1).tolist()
            return tc(idx[0] if batch == 1 else idx, scores)

        fns["f"] = run_f

    if "g" in keys:
        from captum.attr import LayerGradCam

        m_g, layer_g = copy_of_model()
        lgc = LayerGradCam(m_g, layer_g)
        target = classes[0] if batch == 1 else classes

        def run_g():
            return lgc.attribute(x, target=target, relu_attributions=True)

        fns["g"] = run_g

    def agreement() -> dict:
        """Max abs difference of min-max scaled maps against ours (b), at layer resolution (d: 224)."""
        import torch.nn.functional as F

        def scale(t):
            t = t.float().flatten(1)
            t = t - t.min(1, keepdim=True).values
            return t / (t.max(1, keepdim=True).values + 1e-7)

        res = {}
        if "b" not in fns:
            return res
        ours = fns["b"]().maps["gradcam", layer_path][:, 0].cpu()  # (B, h, w)
        if "d" in fns:
            d = torch.from_numpy(fns["d"]())
            up = F.interpolate(ours[:, None], size=d.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            res["d"] = float((scale(up) - scale(d)).abs().max())
        if "f" in fns:
            res["f"] = float((scale(ours) - scale(fns["f"]()[0].detach().cpu())).abs().max())
        if "g" in fns:
            res["g"] = float((scale(ours) - scale(fns["g"]()[:, 0].detach().cpu())).abs().max())
        return res

    if device.startswith("cuda"):  # time to the end of the GPU's work, not of the launches
        fns = {k: _synchronized(fn) for k, fn in fns.items()}

    extra["classes"] = classes
    return fns, cleanups, agreement, extra


def _synchronized(fn):
    import torch

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


# --- driver ------------------------------------------------------------------------------


def run_rounds(
    fns: dict,
    rounds: int,
    warmup: int,
    rng: random.Random,
    deadline: float | None,
    min_rounds: int,
    clock=time.perf_counter,
) -> tuple[dict[str, list[float]], int]:
    """Measured times per contender, and the number of warm-up rounds actually run.

    With a ``deadline``, a round that would (going by the previous round) end past it is
    not started once ``min_rounds`` are measured; before that, remaining warm-up is dropped.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    warm_left, warm_done, last = warmup, 0, 0.0
    while len(times[keys[0]]) < rounds:
        now = time.perf_counter()
        if deadline is not None and (warm_done or len(times[keys[0]])) and now + last > deadline:
            if len(times[keys[0]]) >= min_rounds:
                break
            warm_left = 0
        order = keys[:]
        rng.shuffle(order)
        gc.collect()
        t_round = time.perf_counter()
        for k in order:
            t0 = clock()
            fns[k]()
            dt = clock() - t0
            if not warm_left:
                times[k].append(dt)
        last = time.perf_counter() - t_round
        if warm_left:
            warm_left -= 1
            warm_done += 1
    return times, warm_done


def print_table(title: str, stats: dict[str, dict], note: str = "") -> None:
    print(f"\n== {title} ==")
    if note:
        print(f"   {note}")
    has_h = "h" in stats
    print(
        f"   {'contender':<34} {'median':>9} {'IQR':>19} {'min-max':>19} {'x(a)':>6} {'paired':>7}"
        + (f" {'x(h)':>6}" if has_h else "")
    )
    for k, s in stats.items():
        iqr = f"{s['q1']:.1f}-{s['q3']:.1f}"
        mm = f"{s['min']:.1f}-{s['max']:.1f}"
        ratio = f"{s.get('ratio_to_a', float('nan')):.2f}"
        paired = f"{s.get('paired_ratio_to_a', float('nan')):.2f}"
        extra = f" {s['median_ms_per_image'] / stats['h']['median_ms_per_image']:>6.2f}" if has_h else ""
        print(
            f"   {k} {CONTENDERS[k]:<32} {s['median_ms_per_image']:>9.1f} {iqr:>19} {mm:>19} {ratio:>6} {paired:>7}"
            + extra
        )
    print(
        "   (ms per image; x(a) = median / median of (a); paired = median over rounds of x/a"
        + ("; x(h) = median / median of (h), the plain forward of our model)" if has_h else ")")
    )


def markdown_summary(data: dict) -> str:
    """One Markdown row per configuration from a ``--json`` dump (what README.md shows)."""
    m = data["machine"]
    lines = [
        f"{m['cpu']}, {m['usable_cores']} cores, torch {m['versions']['torch']}, "
        f"{m['torch_threads']} threads; medians over {data['results'][0]['rounds']} interleaved rounds",
        "",
        "| model | batch | layer | (a) forward ms/img | (h) our model | (b) map | (c) full output | (d) pgc | "
        "(e) pgc full | (f) torchcam | (g) captum | (e)/(c) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        st = r["stats"]

        def ratio(k, st=st):
            return f"{st[k]['ratio_to_a']:.2f}" if k in st else "-"

        ec = (
            f"{st['e']['median_ms_per_image'] / st['c']['median_ms_per_image']:.2f}" if "e" in st and "c" in st else "-"
        )
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['layer']} ({r['layer_kind']}) | "
            f"{st['a']['median_ms_per_image']:.1f} | {ratio('h')} | {ratio('b')} | {ratio('c')} | {ratio('d')} | "
            f"{ratio('e')} | {ratio('f')} | {ratio('g')} | {ec} |"
        )
    lines.append("")
    lines.append("Ratios are to (a), the plain forward of the model as timm builds it.")
    return "\n".join(lines)


def parse_list(text: str, cast=str) -> list:
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="ResNet-50, batch 1, last layer only, with a time budget (< 2 min)"
    )
    ap.add_argument("--models", default=None, help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--batch-sizes", default=None, help="comma list, default 1,8")
    ap.add_argument("--layers", default=None, help="comma list of: last, mid (default both)")
    ap.add_argument("--contenders", default="abcdefgh", help="subset of letters a-h (default all)")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds (default 20)")
    ap.add_argument("--warmup", type=int, default=None, help="unmeasured rounds first (default 3; quick 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="wall seconds for the whole run, start-up included; rounds stop early (keeping at least "
        "--min-rounds per config, warm-up dropped first) when the next one would overrun. "
        "Default: none; --quick: 105",
    )
    ap.add_argument(
        "--min-rounds", type=int, default=None, help="measured rounds kept even past the budget (default 5; --quick 3)"
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: perf_counter (default, the figure to report); cpu: this process's CPU time "
        "(process_time), steadier on a busy machine, best with --threads 1",
    )
    ap.add_argument("--memory-format", default="auto", help="ours: auto (default), channels_last or contiguous")
    ap.add_argument("--no-fold-bn", action="store_true", help="ours: keep BatchNorm separate")
    ap.add_argument(
        "--malloc",
        choices=("kept", "default"),
        default="kept",
        help="kept (default, as the gradcam command runs): glibc keeps freed blocks for reuse "
        "(gradcam_cli.allocator), for every contender alike, since the setting is process-wide; "
        "default: the C library's own settings",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: every contender on that device")
    ap.add_argument("--json", type=Path, default=None, help="also dump results (with raw times) here")
    ap.add_argument(
        "--summarize",
        type=Path,
        default=None,
        metavar="JSON",
        help="print the Markdown summary of an earlier --json dump and exit",
    )
    args = ap.parse_args(argv)
    if args.summarize:
        print(markdown_summary(json.loads(args.summarize.read_text())))
        return 0

    t_start = time.perf_counter()
    from gradcam_cli.allocator import keep_freed_memory

    malloc_kept = keep_freed_memory() if args.malloc == "kept" else False
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    models = (
        [MODEL_ALIASES.get(m, m) for m in parse_list(args.models)]
        if args.models
        else (["resnet50"] if args.quick else list(MODELS))
    )
    for m in models:
        if m not in MODELS:
            ap.error(f"--models: unknown {m!r}; choose from {', '.join(MODELS)}")
    batches = parse_list(args.batch_sizes, int) if args.batch_sizes else ([1] if args.quick else [1, 8])
    layer_kinds = parse_list(args.layers) if args.layers else (["last"] if args.quick else ["last", "mid"])
    keys = [k for k in "ahbcdefg" if k in args.contenders]
    if "a" not in keys:
        ap.error("--contenders must include a (the floor every ratio refers to)")
    rounds = args.rounds if args.rounds is not None else 20
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    budget = args.budget if args.budget is not None else (105.0 if args.quick else None)
    min_rounds = args.min_rounds if args.min_rounds is not None else (3 if args.quick else 5)

    from gradcam_cli import default_layer, load_model, load_rgb, trace_layers

    info = machine_info(args.threads)
    info["malloc_kept"] = malloc_kept
    print(
        f"machine: {info['cpu']} | cores: {info['logical_cores']} logical, {info['usable_cores']} usable | "
        f"load avg {info['loadavg_start'][0]:.2f} {info['loadavg_start'][1]:.2f} {info['loadavg_start'][2]:.2f}"
    )
    print(f"python {info['python']} | " + " ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(
        f"threads: torch {info['torch_threads']} (interop {info['torch_interop_threads']}), "
        f"opencv {info['opencv_threads']}"
    )
    print(f"clock: {'wall (perf_counter)' if args.clock == 'wall' else 'CPU time of this process (process_time)'}")
    print(f"malloc: {'freed blocks kept for reuse (all contenders)' if malloc_kept else 'C library defaults'}")
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}); every contender on the GPU")
    busy = info["loadavg_start"][0]
    if busy > 0.5:
        print(
            f"!! machine not idle: load average {busy:.2f} on {info['usable_cores']} cores before start; "
            "wall timings will be inflated and noisy"
        )
    photo = load_rgb(PHOTO)
    print(f"photo: {PHOTO.relative_to(REPO)} {photo.shape[1]}x{photo.shape[0]} (WxH)")
    print(
        f"plan: models {models}, batches {batches}, layers {layer_kinds}, contenders {''.join(keys)}, "
        f"{rounds} rounds after {warmup} warm-up, budget {f'{budget:.0f} s' if budget else 'none'}"
    )

    n_configs = len(models) * len(batches) * len(layer_kinds)
    deadline_total = t_start + budget - 3.0 if budget else None  # 3 s for the summary and exit
    rng = random.Random(args.seed)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    results = []
    done = 0
    with tempfile.TemporaryDirectory(prefix="gradcam_bench_") as tmp:
        for mkey in models:
            name, pretrained, mid, desc = MODELS[mkey]
            torch.manual_seed(0)
            loaded = load_model(
                name,
                pretrained=pretrained,
                memory_format=args.memory_format,
                fold_bn=not args.no_fold_bn,
                device=args.device,
            )
            torch.manual_seed(0)  # the same weights, as timm builds the model
            user_model = load_model(
                name, pretrained=pretrained, memory_format="contiguous", fold_bn=False, device=args.device
            ).model
            print(
                f"\n{mkey}: ours {loaded.memory_format}, {len(loaded.folded)} BatchNorms folded; "
                "theirs contiguous, unfolded"
            )
            infos = trace_layers(loaded.model, loaded.preprocess.input_size)
            last = default_layer(loaded.model, infos)
            before = model_fingerprint(loaded.model)
            for batch in batches:
                for lk in layer_kinds:
                    layer_path = last if lk == "last" else mid
                    fns, cleanups, agreement, extra = build_contenders(
                        loaded,
                        user_model,
                        layer_path,
                        photo,
                        batch,
                        Path(tmp) / f"{mkey}_b{batch}_{lk}",
                        keys,
                        args.device,
                    )
                    try:
                        agree = agreement()
                        # Share what is left of the budget evenly among the remaining configs.
                        deadline = None
                        if deadline_total is not None:
                            left = deadline_total - time.perf_counter()
                            deadline = time.perf_counter() + max(0.0, left) / (n_configs - done)
                        t0 = time.perf_counter()
                        times, warm_done = run_rounds(
                            fns, rounds, warmup, rng, deadline, min(min_rounds, rounds), clock
                        )
                        wall = time.perf_counter() - t0
                    finally:
                        for c in cleanups:
                            c()
                    done += 1
                    stats = summarize(times, batch)
                    n = len(times["a"])
                    title = (
                        f"{mkey} ({desc}) | batch {batch} | layer {layer_path} ({lk}) | "
                        f"{n} rounds measured (+{warm_done} warm-up), {wall:.0f} s"
                    )
                    note = f"explained class(es): {extra['classes']} | load avg now {os.getloadavg()[0]:.2f}"
                    if agree:
                        note += " | max |diff| of scaled maps vs ours: " + ", ".join(
                            f"{k} {v:.3f}" for k, v in agree.items()
                        )
                    if n < rounds or warm_done < warmup:
                        note += f" | budget: {n} of {rounds} rounds, {warm_done} of {warmup} warm-up"
                    print_table(title, stats, note)
                    results.append(
                        {
                            "model": mkey,
                            "model_desc": desc,
                            "batch": batch,
                            "layer": layer_path,
                            "layer_kind": lk,
                            "rounds": n,
                            "warmup": warm_done,
                            "classes": extra["classes"],
                            "agreement": agree,
                            "stats": stats,
                        }
                    )
            after = model_fingerprint(loaded.model)
            if before != after:
                diffs = [k for k in before if before[k] != after[k]]
                print(f"!! {mkey}: OUR MODEL CHANGED during the benchmark ({', '.join(diffs)})")
            else:
                print(f"   ({mkey}: our model unchanged: parameters, flags, no .grad, module types, no hooks left)")
            del loaded
            gc.collect()

    # --- target checks (ResNet-50, last layer) ----------------------------------------
    print("\ntarget checks (ResNet-50, last layer; ratios of medians, paired ratio in brackets):")

    def find(batch):
        for r in results:
            if r["model"] == "resnet50" and r["batch"] == batch and r["layer_kind"] == "last":
                return r["stats"]
        return None

    def check(label, ok, figure):
        print(f"   {'PASS' if ok else 'FAIL'}  {label}: {figure}")

    s1 = find(1)
    if s1 is None:
        print("   SKIP  all: ResNet-50 batch 1 last layer not measured in this run")
    else:
        a, b, c, e, h = (s1.get(k) for k in "abceh")
        if h:
            for k, label in (("b", "(b)/(h)"), ("c", "(c)/(h)")):
                if s1.get(k):
                    r = s1[k]["median_ms_per_image"] / h["median_ms_per_image"]
                    print(f"   INFO  {label}, on the very same model (as gradcam loads it): {r:.3f}")
        if b:
            check("(b)/(a) <= 1.05", b["ratio_to_a"] <= 1.05, f"{b['ratio_to_a']:.3f} [{b['paired_ratio_to_a']:.3f}]")
        if c:
            check("(c)/(a) <= 2.3", c["ratio_to_a"] <= 2.3, f"{c['ratio_to_a']:.3f} [{c['paired_ratio_to_a']:.3f}]")
        if c and e:
            paired_ec = statistics.median(te / tc for te, tc in zip(e["raw_s"], c["raw_s"]))
            r_ec = e["median_ms_per_image"] / c["median_ms_per_image"]
            check("(e)/(c) >= 3", r_ec >= 3, f"{r_ec:.2f} [{paired_ec:.2f}]")
    s8 = find(8)
    if s1 is None or s8 is None or "c" not in s1 or "c" not in s8:
        print("   SKIP  (c) per image at batch 8 < batch 1: needs ResNet-50 at batch sizes 1 and 8 (--batch-sizes 1,8)")
    else:
        c1, c8 = s1["c"]["median_ms_per_image"], s8["c"]["median_ms_per_image"]
        check("(c) per image, batch 8 < batch 1", c8 < c1, f"{c8:.1f} vs {c1:.1f} ms/img ({c8 / c1:.2f}x)")

    total = time.perf_counter() - t_start
    info["loadavg_end"] = os.getloadavg()
    if deadline_total is not None and total > budget:
        print(f"!! budget of {budget:.0f} s overrun ({total:.0f} s): even --min-rounds {min_rounds} did not fit")
    print(f"\ntotal {total:.0f} s | load avg at end {info['loadavg_end'][0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "contenders": CONTENDERS,
                    "results": results,
                    "total_s": total,
                },
                indent=1,
            )
        )
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
