"""How good the default model's maps are, per method and view, on the hand-labelled sample photos.

Runs `gradcam evaluate sample_images/ -a tests/data/sample_boxes.csv` (every method, the default
layer) once per view in a fresh process, then prints:

  * per view, one row per method: top-1 / GT-known loc at IoU 0.5 (at the operating threshold),
    MaxBoxAcc, MaxBoxAccV2, the best threshold, the pointing game (and, with --faithfulness,
    deletion / insertion AUC, ROAD, Average Drop);
  * the threshold sweep averaged over the methods: BoxAcc at IoU 0.3/0.5/0.7 and their mean per
    threshold, and the threshold it suggests (what the --bbox-threshold default follows);
  * the two views side by side (what the --view default follows).

    python benchmarks/quality.py                               # localisation, both views (CPU: minutes)
    python benchmarks/quality.py --faithfulness --sanity --device cuda --json-dir out/
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = (
    "gradcam",
    "gradcampp",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "scorecam",
    "ablationcam",
    "cam",
    "occlusion",
)
DELTAS = ("0.3", "0.5", "0.7")


def evaluate(view: str, args) -> list[dict]:
    out = Path(args.json_dir or ROOT / "gradcam_eval") / f"quality-{view}"
    cmd = [
        sys.executable,
        "-m",
        "gradcam_cli",
        "evaluate",
        str(ROOT / "sample_images"),
        "-a",
        str(ROOT / "tests" / "data" / "sample_boxes.csv"),
        "--view",
        view,
        "--json",
        "--overwrite",
        "-o",
        str(out),
        "--device",
        args.device,
        "-b",
        str(args.batch_size),
        "--bbox-threshold",
        str(args.threshold),
        "--faithfulness-steps",
        str(args.steps),
        "--quiet",
    ]
    cmd += [a for m in args.methods.split(",") for a in ("--method", m)]
    cmd += ["--faithfulness"] * args.faithfulness + ["--sanity"] * args.sanity + shlex.split(args.extra)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise SystemExit(f"evaluate --view {view} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"[{view}: {time.perf_counter() - start:.0f}s, files in {out}]", file=sys.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def method_table(view: str, rows: list[dict], faithfulness: bool, sanity: bool) -> None:
    head = ["method", "top-1 loc", "GT-known loc", "MaxBoxAcc", "MaxBoxAccV2", "best τ", "pointing"]
    head += ["deletion ↓", "insertion ↑", "ROAD ↑", "avg drop ↓"] if faithfulness else []
    head += ["sanity ρ ↓", "flagged"] if sanity else []
    first = rows[0]
    print(
        f"\n### view {view}: {first['images']} photos, {first['samples']} labelled classes; loc at IoU ≥ 0.5 and "
        f"τ = {first['bbox_threshold']}; pointing-game chance {first['pointing_game_baseline']:.3f}\n"
    )
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [
            r["method"],
            _f(r["top1_loc"]["0.5"]),
            _f(r["gt_known_loc"]["0.5"]),
            _f(r["maxboxacc"]),
            _f(r["maxboxacc_v2"]),
            _f(r["best_threshold"]),
            _f(r["pointing_game"]),
        ]
        if faithfulness:
            cells += [_f(r["deletion_auc"]), _f(r["insertion_auc"]), _f(r["road"]), _f(r["average_drop"])]
        if sanity:
            cells += [_f(r["sanity"][-1]["spearman"]), "yes" if r["sanity_flagged"] else "no"]
        print("| " + " | ".join(cells) + " |")


def sweep_table(view: str, rows: list[dict]) -> float:
    """BoxAcc per threshold averaged over the methods and over δ; returns the threshold it suggests.

    Eight labelled objects make a jagged curve, so the curve is first averaged over a window of
    ±0.05; the suggestion is the multiple of 0.05 closest to that curve's peak among the thresholds
    within 0.005 of it (the peak itself when there is none).
    """
    taus = np.array(rows[0]["sweep"]["threshold"])
    acc = {d: np.mean([r["sweep"][f"boxacc_{d}"] for r in rows], axis=0) for d in DELTAS}
    mean = np.mean([acc[d] for d in DELTAS], axis=0)
    smooth = np.convolve(np.pad(mean, 5, mode="edge"), np.ones(11) / 11, mode="valid")
    peak = int(smooth.argmax())
    near = taus[smooth >= smooth[peak] - 0.005]
    round_ones = [t for t in near if abs(t * 20 - round(t * 20)) < 1e-9]
    choice = float(min(round_ones, key=lambda t: abs(t - taus[peak]))) if round_ones else float(taus[peak])
    print(f"\n### threshold sweep, view {view}, BoxAcc averaged over {len(rows)} methods\n")
    print("| τ | IoU ≥ 0.3 | IoU ≥ 0.5 | IoU ≥ 0.7 | mean | mean over τ ± 0.05 |\n|---|---|---|---|---|---|")
    for tau in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
        i = int(np.argmin(np.abs(taus - tau)))
        print(
            f"| {tau:.2f} | " + " | ".join(f"{acc[d][i]:.3f}" for d in DELTAS) + f" | {mean[i]:.3f} | {smooth[i]:.3f} |"
        )
    print(
        f"\nraw peak {mean.max():.3f} at τ = {taus[int(mean.argmax())]:.2f}; smoothed peak {smooth[peak]:.3f} at "
        f"τ = {taus[peak]:.2f}, within 0.005 of it for τ in [{near.min():.2f}, {near.max():.2f}]; "
        f"suggested: {choice:.2f}"
    )
    return choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", default="crop,full")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=None, help="operating --bbox-threshold (default: the CLI's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--faithfulness", action="store_true")
    parser.add_argument("--sanity", action="store_true")
    parser.add_argument(
        "--extra", default="", help='more flags for gradcam evaluate, one string ("--noise-samples 4 --layer stages")'
    )
    parser.add_argument("--json-dir", default=None, help="where each view's evaluation files go")
    args = parser.parse_args()
    if args.threshold is None:
        sys.path.insert(0, str(ROOT))
        from gradcam_cli.options import ExplainOptions, default_of

        args.threshold = default_of(ExplainOptions, "bbox_threshold")
    summary = {}
    for view in args.views.split(","):
        rows = evaluate(view, args)
        method_table(view, rows, args.faithfulness, args.sanity)
        choice = sweep_table(view, rows)
        summary[view] = (
            choice,
            np.mean([r["maxboxacc_v2"] for r in rows]),
            np.mean([r["maxboxacc"] for r in rows]),
            np.mean([r["gt_known_loc"]["0.5"] for r in rows]),
            np.mean([r["pointing_game"] for r in rows]),
        )
    print(
        "\n### views, averaged over the methods\n\n| view | best τ | MaxBoxAccV2 | MaxBoxAcc | GT-known loc "
        f"(τ = {args.threshold}) | pointing |\n|---|---|---|---|---|---|"
    )
    for view, (choice, v2, v1, known, pointing) in summary.items():
        print(f"| {view} | {choice:.2f} | {v2:.3f} | {v1:.3f} | {known:.3f} | {pointing:.3f} |")


if __name__ == "__main__":
    main()
