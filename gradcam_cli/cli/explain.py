"""``gradcam explain``: arguments in, options built and checked, the job run with terminal reporting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..options import EngineOptions, ExplainOptions, JobOptions, ModelOptions, default_of
from .app import (ActorsOpt, DeviceOpt, EngineOpt, FoldBnOpt, GpusPerActorOpt, LabelsOpt, MemoryFormatOpt, ModelOpt,
                  NumClassesOpt, PretrainedOpt, RayAddressOpt, WeightsOpt, app, fail)
from .console import EXIT_INTERRUPTED

E = {f: default_of(ExplainOptions, f) for f in ("top_k", "alpha", "bbox_threshold", "batch_size", "precision",
                                                  "occlusion_window", "occlusion_stride", "perturbation_batch_size",
                                                  "outputs", "bbox_mode", "colormap", "max_output_pixels", "view")}
M = {f: default_of(ModelOptions, f) for f in ("pretrained", "device", "memory_format", "fold_bn")}
J = {f: default_of(JobOptions, f) for f in ("workers",)}


@app.command()
def explain(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders, glob patterns, or - to read paths from stdin.")],
    model: ModelOpt = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", "-l", help="Module path as `gradcam layers` prints it; repeatable; `stages` = each stage's last "
                              "block. Default: the model's last spatial block.")] = None,
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
    output_dir: Annotated[str, typer.Option(
        "--output-dir", "-o",
        help="Where outputs and results.jsonl go (with --engine ray also a URI: s3://bucket/out).")] = "gradcam_out",
    alpha: Annotated[float, typer.Option("--alpha", help="Heatmap weight in the overlay (0..1).")] = E["alpha"],
    bbox_threshold: Annotated[float, typer.Option(
        "--bbox-threshold", help="Box = largest region where the normalised map >= this (0..1]; 0.2 measured best.")
    ] = E["bbox_threshold"],
    bbox_mode: Annotated[str, typer.Option(
        "--bbox-mode", help="largest: one box; all: every region above the threshold, each with its share.")
    ] = E["bbox_mode"],
    max_output_pixels: Annotated[int, typer.Option(
        "--max-output-pixels", help="Larger photos are scaled down as they are decoded (aspect kept); maps and "
        "pictures are made at that size, boxes stay in the original's pixels.")] = E["max_output_pixels"],
    view: Annotated[str, typer.Option(
        "--view", help="full: the whole photo at the model's scale, uncropped (models that take any input size); "
                       "crop: the model's own resize and center crop; auto: full where the model allows it.")
    ] = E["view"],
    save_raw: Annotated[bool, typer.Option(
        "--save-raw", help="Also write the float map (and the guided gradient) as .npy.")] = False,
    sheet: Annotated[bool, typer.Option(
        "--sheet", help="Also write one PNG per image and class: the photo, then every layer (columns) for every "
                        "method (rows).")] = False,
    caption: Annotated[Optional[bool], typer.Option(
        "--caption/--no-caption", help="Class, probability, method and layer above the picture. Default: on for "
                                       "sheets, off for heatmap and overlay.")] = None,
    colorbar: Annotated[Optional[bool], typer.Option(
        "--colorbar/--no-colorbar", help="The colour map's scale beside the picture. Default: on for sheets, off "
                                         "for heatmap and overlay.")] = None,
    colormap: Annotated[str, typer.Option(
        "--colormap", help="jet; perceptually uniform viridis, inferno, magma, plasma, cividis; turbo.")
    ] = E["colormap"],
    report: Annotated[bool, typer.Option(
        "--report", help="Also write index.html in the output dir: a browsable report of all its results.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip images whose requested outputs all exist (resume a job).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    nul: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", help="I/N: process a deterministic 1/N of the inputs (writes results.I-of-N.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", "-b", help="Images per forward/backward pass.")] = E["batch_size"],
    perturbation_batch_size: Annotated[int, typer.Option(
        "--perturbation-batch-size", help="Perturbed copies per extra forward pass (scorecam, ablationcam, occlusion).")
    ] = E["perturbation_batch_size"],
    workers: Annotated[int, typer.Option(
        "--workers", "-w", help="Threads for decoding and PNG encoding; 0 = inline.")] = J["workers"],
    device: DeviceOpt = M["device"],
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or fp16/bf16 autocast for the forward pass (for GPUs; maps stay float32).")
    ] = E["precision"],
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
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = 0.0,
) -> None:
    """Explain why the model classified each image as it did; writes PNGs and reports each result.

    Exit codes: 0 all done, 1 some image failed, 2 bad request, 130 interrupted.
    """
    from ..errors import UsageError
    from ..options import check_request, parse_shard

    try:
        model_opts = ModelOptions(name=model, pretrained=pretrained, weights=weights, num_classes=num_classes,
                                  labels=labels, device=device, memory_format=memory_format, fold_bn=fold_bn)
        options = ExplainOptions(
            layers=tuple(layer or ()), classes=tuple(classes or ()), top_k=top_k, methods=tuple(method or ("gradcam",)),
            smooth=smooth, occlusion_window=occlusion_window, occlusion_stride=occlusion_stride,
            outputs=tuple(k.strip() for k in outputs.split(",") if k.strip()), alpha=alpha,
            bbox_threshold=bbox_threshold, bbox_mode=bbox_mode, save_raw=save_raw, sheet=sheet, caption=caption,
            colorbar=colorbar, colormap=colormap, overwrite=overwrite, batch_size=batch_size,
            max_output_pixels=max_output_pixels, perturbation_batch_size=perturbation_batch_size, precision=precision, view=view)
        job = JobOptions(workers=workers, skip_existing=skip_existing, fail_fast=fail_fast,
                         shard=parse_shard(shard) if shard else None)
        engine_opts = EngineOptions(engine=engine, ray_address=ray_address, actors=actors,
                                    gpus_per_actor=gpus_per_actor)
        for checked in (model_opts, options, engine_opts):
            checked.validate()
        check_request(model_opts, options)
        job.validate(overwrite=overwrite)
        if engine_opts.engine == "ray":
            code = _explain_on_ray(inputs, recursive, nul, output_dir, model_opts, options, job, engine_opts,
                                   as_json=as_json, quiet=quiet)
            raise typer.Exit(code if "://" in output_dir else _with_report(code, report, output_dir, quiet))
        items = _collect(inputs, recursive, nul, Path(output_dir), job.shard)
        from ..explainer import Explainer

        explainer = Explainer.from_options(model_opts, options)
        _create_output_dir(Path(output_dir))
        _record_run(explainer, {"model": model_opts, "explain": options, "job": job}, Path(output_dir),
                    job.manifest_name)
    except UsageError as err:
        raise fail(str(err)) from None
    from .console import run_with_console

    code = run_with_console(explainer, items, Path(output_dir), job, as_json=as_json, quiet=quiet, table=not as_json)
    raise typer.Exit(_with_report(code, report, output_dir, quiet))


def _with_report(code: int, report: bool, output_dir: str, quiet: bool) -> int:
    """``--report``: the HTML report after the run (not after an interrupted one)."""
    if not report or code == EXIT_INTERRUPTED:
        return code
    from .report import write_report

    return max(code, write_report(Path(output_dir), quiet))


def _record_run(explainer, option_sets: dict, output_dir: Path, manifest_name: str) -> None:
    """``run.json`` for the report: how these outputs were made."""
    from ..errors import UsageError
    from ..output.runinfo import run_info, write_run_info

    try:
        write_run_info(output_dir, manifest_name, run_info(explainer, option_sets, output_dir))
    except OSError as err:
        raise UsageError(f"--output-dir {output_dir}: cannot write ({err.strerror or err})") from None


def _explain_on_ray(inputs, recursive, nul, output_dir: str, model_opts, options, job, engine_opts, *, as_json, quiet):
    """``--engine ray``: the model checked here (on the CPU), the work done by actors on the cluster."""
    from dataclasses import replace

    from ..explainer import Explainer
    from ..job.ray_engine import plan_pool, ray_session, require_ray, run_on_ray
    from ..job.ray_explain import ExplainTask, check_device
    from ..output.store import open_folder
    from .console import run_with_console

    require_ray()
    check_device(model_opts.device, engine_opts.gpus_per_actor)
    is_uri = "://" in output_dir
    items = _collect(inputs, recursive, nul, None if is_uri else Path(output_dir), job.shard)
    checked = Explainer.from_options(replace(model_opts, device="cpu"), options)  # bad layers, classes: exit 2 now
    try:
        output = open_folder(output_dir)
        output[0].make_dir(output[1])
    except (OSError, ValueError) as err:  # unreachable, not writable, or a URI scheme pyarrow does not know
        raise fail(f"--output-dir {output_dir}: cannot create ({getattr(err, 'strerror', None) or err})") from None
    if not is_uri:
        _record_run(checked, {"model": model_opts, "explain": options, "job": job}, Path(output_dir),
                    job.manifest_name)
    task = ExplainTask(model_opts, options, output_dir, workers=job.workers, skip_existing=job.skip_existing)
    with ray_session(engine_opts):
        plan = plan_pool(engine_opts)

        def run(_explainer, items, _output_dir, job, on_record, on_progress, stop):
            return run_on_ray(task, items, output, job, plan, options.batch_size, on_record, on_progress, stop)

        return run_with_console(None, items, output_dir, job, as_json=as_json, quiet=quiet, table=not as_json, run=run)


def _collect(inputs: list[str], recursive: bool, nul: bool, output_dir: Path | None, shard: tuple[int, int] | None):
    """The images to explain (this shard's), after checking the output dir can be made (None: a URI)."""
    from ..errors import UsageError
    from ..job.inputs import collect_inputs, in_shard

    if inputs.count("-") > 1:
        raise UsageError("- (stdin) can be given only once")
    if output_dir is not None:
        check_output_dir(output_dir)
    items = collect_inputs(inputs, recursive=recursive, nul_separated=nul, output_dir=output_dir)
    if all(it.error is not None for it in items):  # nothing to explain: a bad request, with its causes
        causes = "; ".join(it.error for it in items)
        raise UsageError(f"no input images found{': ' + causes if causes else ''}")
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
