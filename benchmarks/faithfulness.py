"""Faithfulness metrics per photo: where the time goes, the forward-pass floor, and other libraries.

For each photo (the bundled EfficientNet-Lite0, its Grad-CAM map of the top class over the model's
input, as `gradcam evaluate --faithfulness` measures it), in interleaved rounds so that load from
other processes falls on every measurement alike:

  * ours: `measure_faithfulness` (deletion, insertion, ROAD, Average Drop), with the count of
    forward inputs and the seconds in forward passes, waiting for ROAD's imputation (and the solves'
    own time: on a CPU they run in a thread of their own beside the forward passes), ranking and
    masking, and the rest (Python);
  * the floor: forward inputs x the model's per-input time on a batch of the photo, measured in
    the same round (the batch size that is fastest in a sweep at the start of the run);
  * pytorch-grad-cam's `ROADCombined` + `CamMultImageConfidenceChange`, torchcam's
    `DeletionInsertionMetric` (zeros for deletion, RISE's blur for insertion: two instances) and
    Quantus' `ROAD` (MoRF only), on the same input and map.

    python benchmarks/faithfulness.py                         # sample photos, 20 steps, 2 threads
    python benchmarks/faithfulness.py --repeat 3 --json faithfulness.json
    python benchmarks/faithfulness.py --no-peers --photos sample_images/cat.png
    python benchmarks/faithfulness.py --tradeoff 10,20,50     # AUCs against the step count
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np

# As the gradcam command does before torch loads (gradcam_cli/threads.py): OpenMP threads that wait sleep, not spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "sample_images"
SWEEP = (1, 2, 4, 8, 16, 32, 64)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", nargs="+", default=[str(PHOTOS)], help="photo files or folders")
    parser.add_argument("--steps", type=int, default=20, help="--faithfulness-steps (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians are reported")
    parser.add_argument("--batch-size", type=int, default=None, help="forward chunk (default: the library's)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip the other libraries")
    parser.add_argument("--tradeoff", default=None, help="comma-separated step counts: AUCs against steps")
    parser.add_argument(
        "--road-in-caller",
        action="store_true",
        help="also time ours with ROAD's solve in the caller's thread, paired in each round",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args(argv)


def photo_paths(specs: list[str]) -> list[Path]:
    out = []
    for spec in specs:
        path = Path(spec)
        out += (
            sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if path.is_dir()
            else [path]
        )
    return out


def load_photos(paths: list[Path], device: str):
    """The bundled model, and per photo: (name, input (1, C, H, W), map over the input, class, probability)."""
    from gradcam_cli import Explainer, ExplainOptions, load_model, load_rgb
    from gradcam_cli.maps.scale import normalize_minmax, upsample_to

    loaded = load_model(device=torch.device(device))
    explainer = Explainer(loaded, ExplainOptions())
    photos = []
    for path in paths:
        tensor, _ = explainer.prepare(load_rgb(str(path)))
        inputs = tensor[None].to(device)
        result = explainer.run_passes(inputs)
        raw = next(iter(result.maps.values()))
        over_input = upsample_to(normalize_minmax(raw.float())[0], tuple(inputs.shape[-2:]))[0, 0]
        probs = torch.softmax(result.logits.float(), dim=1)[0]
        cls = int(probs.argmax())
        photos.append((path.name, inputs, over_input, cls, float(probs[cls])))
    return loaded.model, photos


@contextmanager
def stopwatch(out: dict, key: str):
    start = time.perf_counter()
    yield
    out[key] = time.perf_counter() - start


def per_input_seconds(model, inputs: torch.Tensor, batch: int, passes: int = 3) -> float:
    """The model's forward time per input on a batch of copies of ``inputs`` (best of ``passes`` after one warm-up)."""
    from gradcam_cli.model.device import input_memory_format

    x = inputs.expand(batch, -1, -1, -1).contiguous(memory_format=input_memory_format(model))
    times = []
    with torch.inference_mode():
        for i in range(passes + 1):
            start = time.perf_counter()
            model(x)
            if i:
                times.append(time.perf_counter() - start)
    return min(times) / batch


def ours(model, photo, steps: int, batch_size: int | None) -> dict:
    from gradcam_cli.metrics.faithfulness import FaithfulnessSample, measure_faithfulness

    _, inputs, over_input, cls, prob = photo
    timings: dict = {}
    start = time.perf_counter()
    curves = measure_faithfulness(
        model, inputs, [FaithfulnessSample(0, cls, over_input, prob)], steps, batch_size=batch_size, timings=timings
    )
    timings["total"] = time.perf_counter() - start
    timings["other"] = timings["total"] - sum(timings[k] for k in ("forward", "imputation", "perturbation"))
    c = curves[0]
    timings.update(deletion_auc=c.deletion_auc, insertion_auc=c.insertion_auc, road=c.road, drop=c.drop)
    return timings


def ours_in_caller(model, photo, steps: int, batch_size: int | None) -> float:
    """Our total with each ROAD solve in the caller's thread (its intra-op threads), not beside the forward passes."""
    from gradcam_cli.metrics import faithfulness

    saved, faithfulness.ROAD_IN_BACKGROUND = faithfulness.ROAD_IN_BACKGROUND, False
    try:
        return ours(model, photo, steps, batch_size)["total"]
    finally:
        faithfulness.ROAD_IN_BACKGROUND = saved


class GivenMaps:
    """torchcam's CAM-extractor protocol, answering with a map computed elsewhere."""

    def __init__(self, model, maps):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextmanager
    def _hooks_off(self):
        yield


def peers(model, photo, steps: int) -> dict:
    """Seconds of each other library's metrics on the same input and map."""
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    from torchcam.metrics import DeletionInsertionMetric

    from gradcam_cli.metrics.faithfulness import rise_blur

    _, inputs, over_input, cls, _ = photo
    cams = over_input[None].cpu().numpy()
    out: dict = {}
    with stopwatch(out, "pytorch_grad_cam"):
        ROADCombined(percentiles=list(range(10, 100, 10)))(inputs, cams, [ClassifierOutputSoftmaxTarget(cls)], model)
        CamMultImageConfidenceChange()(inputs, cams, [ClassifierOutputSoftmaxTarget(cls)], model)
    softmax = partial(torch.softmax, dim=-1)
    with stopwatch(out, "torchcam"):
        for baseline in (None, rise_blur):
            metric = DeletionInsertionMetric(
                GivenMaps(model, over_input[None]), softmax, steps=steps, baseline=baseline
            )
            metric.update(inputs, class_idx=[cls])
            metric.summary()
    out["quantus"] = quantus_road(model, photo)
    return out


def quantus_road(model, photo) -> float:
    """Quantus' ROAD loop (MoRF: per percentage, its imputation of the top pixels, then one forward pass).

    Its ``quantus.ROAD`` class broadcasts a one-channel map over a 3-channel input and ranks channel
    values as features, so its imputation indexes past the pixel grid (IndexError) on an RGB input;
    the loop is run here with its own imputation function on the photo's pixel ranking."""
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    _, inputs, over_input, _, _ = photo
    image = inputs[0].cpu().numpy()
    order = np.argsort(-over_input.flatten().cpu().numpy(), kind="stable")
    start = time.perf_counter()
    with torch.inference_mode():
        for p in range(10, 100, 10):
            perturbed = quantus_imputation(image, order[: order.size * p // 100], noise=0.01)
            model(torch.from_numpy(perturbed[None].astype(np.float32)).to(inputs.device)).argmax(1).item()
    return time.perf_counter() - start


def sweep(model, photo) -> dict[int, float]:
    """Per-input forward seconds at each batch size of :data:`SWEEP` (the first photo's size)."""
    return {b: per_input_seconds(model, photo[1], b) for b in SWEEP}


def measure(model, photos, args) -> list[dict]:
    """Interleaved rounds; per photo the median of each figure over the rounds."""
    from gradcam_cli.metrics.faithfulness import forward_batch_size

    rounds: list[list[dict]] = [[] for _ in photos]
    for r in range(args.repeat):
        for i, photo in enumerate(photos):
            size = args.batch_size or forward_batch_size(photo[1].device, *photo[1].shape[-2:])
            row: dict = {"batch_size": size}
            order = [0, 1] if (r + i) % 2 == 0 else [1, 0]  # ours first in half the rounds, the floor in the rest
            for which in order:
                if which == 0:
                    row.update(ours(model, photo, args.steps, args.batch_size))
                else:
                    row["per_input"] = per_input_seconds(model, photo[1], size)
            if args.road_in_caller:
                row["caller_total"] = ours_in_caller(model, photo, args.steps, args.batch_size)
            if args.peers:
                row.update(peers(model, photo, args.steps))
            rounds[i].append(row)
    return [summarise(name_of(photo), rows) for photo, rows in zip(photos, rounds)]


def name_of(photo) -> str:
    return f"{photo[0]} ({photo[1].shape[-2]}x{photo[1].shape[-1]})"


def summarise(name: str, rows: list[dict]) -> dict:
    """Medians over the rounds, each round's ratio from its own pair; and the best of the rounds (load from
    other processes only adds time, so the fastest round of each is the least disturbed)."""
    for row in rows:
        row["floor"] = row["forward_inputs"] * row["per_input"]
        row["ratio_to_floor"] = row["total"] / row["floor"]
        if "pytorch_grad_cam" in row:
            row["pytorch_grad_cam_over_ours"] = row["pytorch_grad_cam"] / row["total"]
    out = {"photo": name, "rounds": len(rows)}
    for key in rows[0]:
        out[key] = statistics.median(row[key] for row in rows)
    out["best_total"] = min(row["total"] for row in rows)
    out["best_floor"] = min(row["floor"] for row in rows)
    out["best_ratio"] = out["best_total"] / out["best_floor"]
    return out


def print_table(results: list[dict], swept: dict[int, float]) -> None:
    print("per-input forward time by batch size: " + ", ".join(f"{b}: {s * 1000:.1f} ms" for b, s in swept.items()))
    print("seconds per photo; ratio: total / floor (median of the rounds' own ratios), best: fastest round's;")
    print(
        "wait: for ROAD's imputation; solve: its own time (on a CPU in a thread of its own, beside the forward passes)"
    )
    head = (
        f"{'photo':28} {'inputs':>6} {'total':>7} {'floor':>7} {'ratio':>5} {'best':>5} {'fwd':>6} {'wait':>6} "
        f"{'solve':>6} {'mask':>6} {'other':>6} {'pgc':>7} {'x':>5} {'tcam':>6} {'quant':>6}"
    )
    print(head)
    for r in results:
        peer = (
            (
                f"{r['pytorch_grad_cam']:7.2f} {r['pytorch_grad_cam_over_ours']:5.1f} {r['torchcam']:6.2f} "
                f"{r['quantus']:6.2f}"
            )
            if "pytorch_grad_cam" in r
            else ""
        )
        print(
            f"{r['photo']:28} {r['forward_inputs']:6.0f} {r['total']:7.3f} {r['floor']:7.3f} "
            f"{r['ratio_to_floor']:5.2f} {r['best_ratio']:5.2f} {r['forward']:6.3f} {r['imputation']:6.3f} "
            f"{r.get('imputation_solve', 0.0):6.3f} {r['perturbation']:6.3f} {r['other']:6.3f} {peer}"
        )
    total = sum(r["total"] for r in results)
    floor = sum(r["floor"] for r in results)
    best = sum(r["best_total"] for r in results) / sum(r["best_floor"] for r in results)
    line = (
        f"all photos (medians): {total / len(results):.3f} s per photo, floor {floor / len(results):.3f} s, "
        f"ratio {total / floor:.2f} (best rounds: {best:.2f})"
    )
    if "caller_total" in results[0]:
        caller = sum(r["caller_total"] for r in results)
        line += f"; ROAD's solve in the caller's thread: {caller / len(results):.3f} s per photo ({caller / floor:.2f})"
    if "pytorch_grad_cam" in results[0]:
        pgc = sum(r["pytorch_grad_cam"] for r in results)
        line += f"; pytorch-grad-cam ROAD + confidence change {pgc / len(results):.2f} s per photo ({pgc / total:.1f}x)"
    print(line)


def tradeoff(model, photos, step_counts: list[int]) -> list[dict]:
    """Deletion and insertion AUC of each photo at each step count, and the largest gap to the finest."""
    from gradcam_cli.metrics.faithfulness import FaithfulnessSample, measure_faithfulness

    rows = []
    for photo in photos:
        _, inputs, over_input, cls, prob = photo
        row: dict = {"photo": name_of(photo)}
        for steps in step_counts:
            start = time.perf_counter()
            [c] = measure_faithfulness(model, inputs, [FaithfulnessSample(0, cls, over_input, prob)], steps)
            row[steps] = {
                "deletion_auc": c.deletion_auc,
                "insertion_auc": c.insertion_auc,
                "seconds": time.perf_counter() - start,
            }
        rows.append(row)
    finest = max(step_counts)
    print(
        f"{'steps':>5} {'mean |d deletion|':>18} {'max':>7} {'mean |d insertion|':>19} {'max':>7} {'s/photo':>8}"
        f"   (differences to {finest} steps)"
    )
    for steps in step_counts:
        dd = [abs(r[steps]["deletion_auc"] - r[finest]["deletion_auc"]) for r in rows]
        di = [abs(r[steps]["insertion_auc"] - r[finest]["insertion_auc"]) for r in rows]
        seconds = statistics.mean(r[steps]["seconds"] for r in rows)
        print(
            f"{steps:5d} {statistics.mean(dd):18.4f} {max(dd):7.4f} {statistics.mean(di):19.4f} {max(di):7.4f} "
            f"{seconds:8.2f}"
        )
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    from gradcam_cli.allocator import keep_freed_memory

    keep_freed_memory()  # as the `gradcam` command does at start
    torch.set_num_threads(args.threads)
    model, photos = load_photos(photo_paths(args.photos), args.device)
    report: dict = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "steps": args.steps,
        "repeat": args.repeat,
        "device": args.device,
    }
    if args.tradeoff:
        report["tradeoff"] = tradeoff(model, photos, [int(s) for s in args.tradeoff.split(",")])
    else:
        ours(model, photos[0], args.steps, args.batch_size)  # warm-up: first calls pay for allocations
        swept = sweep(model, photos[0])
        report["sweep"] = {str(b): s for b, s in swept.items()}
        report["photos"] = measure(model, photos, args)
        print_table(report["photos"], swept)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
