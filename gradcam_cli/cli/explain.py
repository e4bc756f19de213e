"""``gradcam explain``: arguments in, options built and checked, the job run with terminal reporting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..options import ExplainOptions, JobOptions, ModelOptions, default_of
from .app import (DeviceOpt, FoldBnOpt, LabelsOpt, MemoryFormatOpt, ModelOpt, NumClassesOpt, PretrainedOpt,
                  WeightsOpt, app, fail)

E = {f: default_of(ExplainOptions, f) for f in ("top_k", "alpha", "bbox_threshold", "batch_size", "precision",
                                                  "occlusion_window", "occlusion_stride", "perturbation_batch_size",
                                                  "outputs", "bbox_mode", "view")}
M = {f: default_of(ModelOptions, f) for f in ("pretrained", "device", "memory_format", "fold_bn")}
J = {f: default_of(JobOptions, f) for f in ("workers",)}


@app.command()
def explain(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders, glob patterns, or - to read paths from stdin.")],
    model: ModelOpt = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", "-l", help="Module path as `gradcam layers` prints it; repeatable. Default: the model's last spatial block.")] = None,
    classes: Annotated[Optional[list[str]], typer.Option(
        "--class", "-c", help="Class index or name to explain; repeatable. Default: the top prediction.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Explain the K most likely classes.")] = E["top_k"],
    method: Annotated[Optional[list[str]], typer.Option(
        "--method", help="Repeatable; `gradcam methods` lists them. Default: gradcam.")] = None,
    smooth: Annotated[Optional[str], typer.Option(
        "--smooth", help="aug (average over flips and scalings) or eigen (first principal component).")] = None,
    occlusion_window: Annotated[int, typer.Option(
        "--occlusion-window", help="Occlusion: patch side in input pixels.")] = E["occlusion_window"],
    occlusion_stride: Annotated[int, typer.Option(
        "--occlusion-stride", help="Occlusion: step between patches.")] = E["occlusion_stride"],
    outputs: Annotated[str, typer.Option(
        "--outputs", help="Comma-separated subset of heatmap,overlay,guided,bbox.")] = ",".join(E["outputs"]),
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", readable=False, help="Where outputs and results.jsonl go.")] = Path("gradcam_out"),
    alpha: Annotated[float, typer.Option("--alpha", help="Heatmap weight in the overlay (0..1).")] = E["alpha"],
    bbox_threshold: Annotated[float, typer.Option(
        "--bbox-threshold", help="Box = largest region where the normalised map >= this (0..1]; 0.2 measured best.")] = E["bbox_threshold"],
    bbox_mode: Annotated[str, typer.Option(
        "--bbox-mode", help="largest: one box; all: every region above the threshold, each with its share.")] = E["bbox_mode"],
    view: Annotated[str, typer.Option(
        "--view", help="full: the whole photo at the model's scale, uncropped (models that take any input size); "
                       "crop: the model's own resize and center crop; auto: full where the model allows it.")] = E["view"],
    save_raw: Annotated[bool, typer.Option("--save-raw", help="Also write the float map as .npy.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip images whose requested outputs all exist (resume a job).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    nul: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", help="I/N: process a deterministic 1/N of the inputs (writes results.I-of-N.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward/backward pass.")] = E["batch_size"],
    perturbation_batch_size: Annotated[int, typer.Option(
        "--perturbation-batch-size", help="Perturbed copies per extra forward pass (scorecam, ablationcam, occlusion).")] = E["perturbation_batch_size"],
    workers: Annotated[int, typer.Option("--workers", "-w", help="Threads for decoding and PNG encoding; 0 = inline.")] = J["workers"],
    device: DeviceOpt = M["device"],
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or fp16/bf16 autocast for the forward pass (for GPUs; maps stay float32).")] = E["precision"],
    memory_format: MemoryFormatOpt = M["memory_format"],
    fold_bn: FoldBnOpt = M["fold_bn"],
    pretrained: PretrainedOpt = M["pretrained"],
    weights: WeightsOpt = None,
    num_classes: NumClassesOpt = None,
    labels: LabelsOpt = None,
    as_json: Annotated[bool, typer.Option(
        "--json", "--jsonl", help="Stream one JSON object per image, method, layer and class on stdout.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed image.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but usage errors.")] = False,
) -> None:
    """Explain why the model classified each image as it did; writes PNGs and reports each result.

    Exit codes: 0 all done, 1 some image failed, 2 bad request, 130 interrupted.
    """
    from ..errors import UsageError
    from ..options import parse_shard

    try:
        model_opts = ModelOptions(name=model, pretrained=pretrained, weights=weights, num_classes=num_classes,
                                  labels=labels, device=device, memory_format=memory_format, fold_bn=fold_bn)
        options = ExplainOptions(
            layers=tuple(layer or ()), classes=tuple(classes or ()), top_k=top_k, methods=tuple(method or ("gradcam",)),
            smooth=smooth, occlusion_window=occlusion_window, occlusion_stride=occlusion_stride,
            outputs=tuple(k.strip() for k in outputs.split(",") if k.strip()), alpha=alpha,
            bbox_threshold=bbox_threshold, bbox_mode=bbox_mode, save_raw=save_raw, overwrite=overwrite, batch_size=batch_size,
            perturbation_batch_size=perturbation_batch_size, precision=precision, view=view)
        job = JobOptions(workers=workers, skip_existing=skip_existing, fail_fast=fail_fast,
                         shard=parse_shard(shard) if shard else None)
        for checked in (model_opts, options):
            checked.validate()
        job.validate(overwrite=overwrite)
        items = _collect(inputs, recursive, nul, output_dir, job.shard)
        from ..explainer import Explainer

        explainer = Explainer.from_options(model_opts, options)
        _create_output_dir(output_dir)
    except UsageError as err:
        raise fail(str(err)) from None
    from .console import run_with_console

    raise typer.Exit(run_with_console(explainer, items, output_dir, job, as_json=as_json, quiet=quiet,
                                      table=not as_json))


def _collect(inputs: list[str], recursive: bool, nul: bool, output_dir: Path, shard: tuple[int, int] | None):
    """The images to explain (this shard's), after checking the output dir can be made."""
    from ..errors import UsageError
    from ..job.inputs import collect_inputs, in_shard

    if inputs.count("-") > 1:
        raise UsageError("- (stdin) can be given only once")
    check_output_dir(output_dir)
    items = collect_inputs(inputs, recursive=recursive, nul_separated=nul, output_dir=output_dir)
    if not items:
        raise UsageError("no input images found")
    return [it for it in items if in_shard(it, *shard)] if shard else items


def check_output_dir(output_dir: Path) -> None:
    """Fail early if ``output_dir`` cannot be created or written; creates nothing."""
    from ..errors import UsageError

    probe = output_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--output-dir {output_dir}: cannot create it, {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {output_dir}: not a writable directory ({probe} is not writable)")


def _create_output_dir(output_dir: Path) -> None:
    from ..errors import UsageError

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output-dir {output_dir}: cannot create ({err.strerror or err})") from None
