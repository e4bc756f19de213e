"""``gradcam evaluate``: how good the maps are, against ground-truth boxes and the model itself."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..options import EngineOptions, EvaluateOptions, ExplainOptions, JobOptions, ModelOptions, default_of
from .app import (ActorsOpt, DeviceOpt, EngineOpt, FoldBnOpt, GpusPerActorOpt, LabelsOpt, MemoryFormatOpt, ModelOpt,
                  NumClassesOpt, PretrainedOpt, RayAddressOpt, WeightsOpt, app, fail)

E = {f: default_of(ExplainOptions, f) for f in ("bbox_threshold", "batch_size", "precision", "occlusion_window",
                                                  "occlusion_stride", "perturbation_batch_size", "view")}
V = {f: default_of(EvaluateOptions, f) for f in ("faithfulness_steps", "sanity_images", "pointing_tolerance")}
M = {f: default_of(ModelOptions, f) for f in ("pretrained", "device", "memory_format", "fold_bn")}
J = {f: default_of(JobOptions, f) for f in ("workers",)}

# Table columns: (summary key, heading, higher is better).
_LOCALISATION = [("top1_loc", "top-1 loc", True), ("gt_known_loc", "GT-known loc", True), ("mean_iou", "mIoU", True),
                 ("maxboxacc", "MaxBoxAcc", True), ("maxboxacc_v2", "MaxBoxAccV2", True),
                 ("best_threshold", "best τ", None), ("pointing_game", "pointing", True)]
_FAITHFULNESS = [("deletion_auc", "deletion ↓", False), ("insertion_auc", "insertion ↑", True), ("road", "ROAD ↑", True),
                 ("average_drop", "avg drop ↓", False), ("increase_in_confidence", "increase ↑", True)]


@app.command()
def evaluate(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders, glob patterns, or - to read paths from stdin.")],
    annotations: Annotated[Path, typer.Option(
        "--annotations", "-a", readable=False,
        help="Ground-truth boxes: CSV (file,class,x0,y0,x1,y1; x1/y1 exclusive), a folder of Pascal VOC XML files, "
             "or a COCO instances JSON.")],
    model: ModelOpt = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", "-l", help="Module path as `gradcam layers` prints it; repeatable. Default: the model's last spatial block.")] = None,
    method: Annotated[Optional[list[str]], typer.Option(
        "--method", help="Repeatable; all share the forward passes. Default: gradcam.")] = None,
    smooth: Annotated[Optional[str], typer.Option("--smooth", help="aug or eigen, as for explain.")] = None,
    occlusion_window: Annotated[int, typer.Option("--occlusion-window", help="Occlusion: patch side in input pixels.")] = E["occlusion_window"],
    occlusion_stride: Annotated[int, typer.Option("--occlusion-stride", help="Occlusion: step between patches.")] = E["occlusion_stride"],
    bbox_threshold: Annotated[float, typer.Option(
        "--bbox-threshold", help="The box threshold judged by top-1/GT-known loc and mIoU (the sweep tries 0.00..0.99).")] = E["bbox_threshold"],
    view: Annotated[str, typer.Option("--view", help="auto, crop or full, as for explain.")] = E["view"],
    faithfulness: Annotated[bool, typer.Option(
        "--faithfulness/--no-faithfulness", help="Also deletion/insertion, ROAD, Average Drop (extra forward passes).")] = False,
    faithfulness_steps: Annotated[int, typer.Option(
        "--faithfulness-steps", help="Points per perturbation curve; a batch costs at most this many forward passes.")] = V["faithfulness_steps"],
    sanity: Annotated[bool, typer.Option("--sanity", help="Cascading model randomisation on a copy of the model.")] = False,
    sanity_images: Annotated[int, typer.Option("--sanity-images", help="How many images the sanity check uses.")] = V["sanity_images"],
    pointing_tolerance: Annotated[int, typer.Option(
        "--pointing-tolerance", help="Pointing game: pixels the maximum may lie outside a box.")] = V["pointing_tolerance"],
    output_dir: Annotated[Path, typer.Option(
        "--output-dir", "-o", readable=False, help="Where evaluation.jsonl, per_image.csv, sweep.csv and the plots go.")] = Path("gradcam_eval"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation's files.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    nul: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward/backward pass.")] = E["batch_size"],
    perturbation_batch_size: Annotated[int, typer.Option(
        "--perturbation-batch-size", help="Perturbed copies per extra forward pass (scorecam, ablationcam, occlusion).")] = E["perturbation_batch_size"],
    workers: Annotated[int, typer.Option("--workers", "-w", help="Threads for decoding; 0 = inline.")] = J["workers"],
    device: DeviceOpt = M["device"],
    precision: Annotated[str, typer.Option("--precision", help="fp32, or fp16/bf16 autocast for the forward passes.")] = E["precision"],
    memory_format: MemoryFormatOpt = M["memory_format"],
    fold_bn: FoldBnOpt = M["fold_bn"],
    pretrained: PretrainedOpt = M["pretrained"],
    weights: WeightsOpt = None,
    num_classes: NumClassesOpt = None,
    labels: LabelsOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = 0.0,
    as_json: Annotated[bool, typer.Option("--json", "--jsonl", help="One JSON object per method and layer on stdout.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed image.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")] = False,
) -> None:
    """Measure how good the maps are: boxes against ground truth, faithfulness, sanity; one row per method and layer.

    Exit codes: 0 all done, 1 some image failed, 2 bad request, 130 interrupted.
    """
    from ..errors import UsageError

    try:
        model_opts = ModelOptions(name=model, pretrained=pretrained, weights=weights, num_classes=num_classes,
                                  labels=labels, device=device, memory_format=memory_format, fold_bn=fold_bn)
        options = ExplainOptions(
            layers=tuple(layer or ()), methods=tuple(method or ("gradcam",)), smooth=smooth,
            occlusion_window=occlusion_window, occlusion_stride=occlusion_stride, outputs=(),
            bbox_threshold=bbox_threshold, batch_size=batch_size, perturbation_batch_size=perturbation_batch_size,
            precision=precision, view=view)
        measure = EvaluateOptions(annotations=annotations, faithfulness=faithfulness,
                                  faithfulness_steps=faithfulness_steps, sanity=sanity, sanity_images=sanity_images,
                                  pointing_tolerance=pointing_tolerance, overwrite=overwrite)
        job = JobOptions(workers=workers, fail_fast=fail_fast)
        engine_opts = EngineOptions(engine=engine, ray_address=ray_address, actors=actors,
                                    gpus_per_actor=gpus_per_actor)
        for checked in (model_opts, options, measure, engine_opts):
            checked.validate()
        job.validate()
        from .explain import _collect

        items = _collect(inputs, recursive, nul, output_dir, None)
        _refuse_existing(output_dir, overwrite)
        from ..evaluate.annotations import read_annotations
        from ..explainer import Explainer

        truth = read_annotations(annotations)
        if not any(truth.for_image(item.path) for item in items):
            raise UsageError(f"--annotations {annotations}: none of the {len(items)} input images is annotated there "
                             "(matched by path, or by file name where only one annotated file has it)")
        on_ray = engine_opts.engine == "ray"
        if on_ray:
            from ..job.ray_engine import require_ray
            from ..job.ray_explain import check_device

            require_ray()
            check_device(model_opts.device, engine_opts.gpus_per_actor)
        # With Ray, the model here (on the CPU) checks the request and runs the sanity check.
        explainer = Explainer.from_options(replace(model_opts, device="cpu") if on_ray else model_opts, options)
        truth.resolve(explainer.loaded.labels, explainer.loaded.num_classes)
        run = _on_ray(model_opts, options, engine_opts) if on_ray else None
    except UsageError as err:
        raise fail(str(err)) from None
    raise typer.Exit(_run(explainer, items, truth, measure, job, output_dir, as_json=as_json, quiet=quiet, run=run))


def _output_names() -> list[str]:
    from ..evaluate.report import PER_IMAGE_FILE, PLOT_FILES, SUMMARY_FILE, SWEEP_FILE

    return [SUMMARY_FILE, PER_IMAGE_FILE, SWEEP_FILE, *PLOT_FILES]


def _refuse_existing(output_dir: Path, overwrite: bool) -> None:
    from ..errors import UsageError

    existing = [output_dir / n for n in _output_names() if (output_dir / n).exists()]
    if existing and not overwrite:
        raise UsageError(f"--output-dir {output_dir}: {existing[0].name} exists from an earlier evaluation; "
                         "pass --overwrite or another --output-dir")


def _on_ray(model_opts, options, engine_opts):
    """``--engine ray``: the images measured by actors on the cluster, gathered here in input order; then the
    sanity check, on this machine, over the first ``--sanity-images`` images (called as ``evaluate_images``)."""
    from ..evaluate.ray_task import MEASURED, EvaluateTask, measurements_of
    from ..evaluate.runner import Measurements, annotated, evaluate_images
    from ..job.ray_engine import plan_pool, ray_session, run_on_ray
    from ..job.runner import JobSummary

    def run(explainer, items, annotations, measure, job, *, stop, on_progress, on_message):
        skipped = JobSummary()
        truths = annotated(items, annotations, skipped, on_message)
        task = EvaluateTask(model_opts, options, replace(measure, sanity=False),
                            {item.path: truth for item, truth in truths.items()}, workers=job.workers)
        state = Measurements.of(explainer)

        def on_record(record: dict) -> None:
            if MEASURED in record:
                measurements_of(record).add_to(state)
            else:
                on_message(record.get("error", f"{record.get('input')}: failed"))

        with ray_session(engine_opts):
            summary = run_on_ray(task, list(truths), None, job, plan_pool(engine_opts), options.batch_size, on_record,
                                 on_progress, stop)
        summary.total, summary.skipped = len(items), summary.skipped + skipped.skipped
        if measure.sanity and state.samples and not stop.is_set():
            firsts = list(truths)[:measure.sanity_images]
            state.sanity = evaluate_images(explainer, firsts, annotations, replace(measure, faithfulness=False),
                                           job, stop=stop)[0].sanity
        return state, summary

    return run


def _run(explainer, items, truth, measure, job, output_dir: Path, *, as_json: bool, quiet: bool, run=None) -> int:
    """The pass over the images with terminal reporting, then the report; returns the exit code.

    ``run``: the engine, called as ``evaluate_images`` is (default: ``evaluate_images``, in this process).
    """
    from ..errors import UsageError
    from ..evaluate.runner import evaluate_images
    from .console import EXIT_INTERRUPTED, EXIT_USAGE, _install_stop_handlers, exit_code, print_summary, \
        restore_handlers, start_progress

    stop = threading.Event()
    progress, on_progress = start_progress(len(items), "evaluating", quiet)

    def on_message(text: str) -> None:
        if not quiet:
            line = f"gradcam: {text}"
            (progress.console.print(line, markup=False, highlight=False) if progress
             else print(line, file=sys.stderr, flush=True))

    previous = _install_stop_handlers(stop)
    try:
        measured, summary = (run or evaluate_images)(explainer, items, truth, measure, job, stop=stop,
                                                     on_progress=on_progress, on_message=on_message)
    except KeyboardInterrupt:
        if not quiet:
            print("gradcam: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as err:
        print(f"gradcam: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if progress:
            progress.stop()
        restore_handlers(previous)
    summaries = _report(explainer, measured, output_dir, summary)
    if as_json:
        for s in summaries:
            print(json.dumps(s, ensure_ascii=False, allow_nan=False), flush=True)
    elif summaries and measured.samples:
        _print_table(summaries, measure, output_dir)
    if not quiet:
        print_summary(summary)
    if summary.manifest_error:
        print(f"gradcam: error: {summary.manifest_error}", file=sys.stderr, flush=True)
    return exit_code(summary)


def _report(explainer, measured, output_dir: Path, summary) -> list[dict]:
    """The summaries; the JSON lines, CSVs and plots written into ``output_dir`` together, atomically."""
    from ..evaluate import plots
    from ..evaluate.report import PER_IMAGE_FILE, SUMMARY_FILE, SWEEP_FILE, per_image_csv, summarise, sweep_csv
    from ..output.files import write_all_atomic

    summaries = [summarise(measured, key) for key in measured.keys]
    files = {
        output_dir / SUMMARY_FILE: "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in summaries).encode(),
        output_dir / PER_IMAGE_FILE: per_image_csv(measured, explainer.loaded.labels),
        output_dir / SWEEP_FILE: sweep_csv(summaries),
    }
    if measured.samples:
        files[output_dir / "sweep.png"] = plots.sweep_plot(summaries)
        if any(measured.faithfulness.values()):
            files[output_dir / "curves.png"] = plots.curves_plot(measured, summaries)
        if measured.sanity:
            files[output_dir / "sanity.png"] = plots.sanity_plot(summaries)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_all_atomic(files)
    except OSError as err:
        summary.manifest_error = f"{output_dir}: cannot write the evaluation ({err.strerror or err})"
    return summaries


def _cell(value) -> str:
    if isinstance(value, dict):
        value = value.get("0.5")
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_table(summaries: list[dict], measure: EvaluateOptions, output_dir: Path) -> None:
    """One row per method and layer; the best value of each column in bold green."""
    from rich.console import Console
    from rich.table import Table

    columns = list(_LOCALISATION) + (_FAITHFULNESS if measure.faithfulness else [])
    columns += [("sanity_last", "sanity ρ ↓", False)] if measure.sanity else []
    rows = [{**s, "sanity_last": (s["sanity"][-1]["spearman"] if s.get("sanity") else None)} for s in summaries]
    first = summaries[0]
    table = Table(title=f"{first['images']} images, {first['samples']} annotated classes, view {first['view']}, "
                        f"τ = {first['bbox_threshold']}, IoU ≥ 0.5; pointing-game chance "
                        f"{_cell(first['pointing_game_baseline'])}", title_justify="left")
    for heading in ("method", "layer", *(h for _, h, _ in columns)):
        table.add_column(heading, justify="left" if heading in ("method", "layer") else "right")
    best = {}
    for key, _, higher in columns:
        values = [_cell(r[key]) for r in rows]
        numbers = [float(v) for v in values if v != "-"]
        if higher is not None and len(set(numbers)) > 1:
            best[key] = f"{(max if higher else min)(numbers):.3f}"
    for r in rows:
        cells = [_cell(r[key]) for key, _, _ in columns]
        cells = [f"[bold green]{c}[/]" if best.get(key) == c else c for (key, _, _), c in zip(columns, cells)]
        flag = " [red](maps do not change)[/]" if r.get("sanity_flagged") else ""
        table.add_row(r["method"], r["layer"] + flag, *cells)
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # a file or a pipe: the whole table, not one cut to 80 columns
        console = Console(soft_wrap=False, width=220)
    try:
        console.print(table)
        console.print(f"details in {output_dir}", highlight=False)
    except BrokenPipeError:
        pass
