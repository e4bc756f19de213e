"""The ``gradcam`` command: parses arguments, calls the pipeline, prints. Nothing else.

Heavy libraries (torch, timm, OpenCV) are imported inside the commands so that
``gradcam --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Explain image-classifier decisions with Grad-CAM: heatmaps, overlays, guided images, boxes.",
)

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="timm name (resnet50), or torchvision/NAME. Default: bundled EfficientNet-Lite0.")]
PretrainedOpt = Annotated[bool, typer.Option(
    "--pretrained/--no-pretrained", help="Download pretrained weights (default) or use random init.")]
WeightsOpt = Annotated[Optional[Path], typer.Option(
    "--weights", readable=False, help="Local checkpoint (.safetensors, or .pt/.pth read with weights_only=True).")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Classifier width for fine-tuned heads.")]


def _fail(message: str, code: int = 2) -> "typer.Exit":
    typer.echo(f"gradcam: error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def explain(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders, glob patterns, or - to read paths from stdin.")],
    model: ModelOpt = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", "-l", help="Module path as `gradcam layers` prints it; repeatable. Default: the model's last spatial block.")] = None,
    classes: Annotated[Optional[list[str]], typer.Option(
        "--class", "-c", help="Class index or name to explain; repeatable. Default: the top prediction.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Explain the K most likely classes.")] = 1,
    method: Annotated[str, typer.Option("--method", help="gradcam, or cam (GAP->FC heads only).")] = "gradcam",
    outputs: Annotated[str, typer.Option(
        "--outputs", help="Comma-separated subset of heatmap,overlay,guided,bbox.")] = "heatmap,overlay,guided,bbox",
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", readable=False, help="Where outputs and results.jsonl go.")] = Path("gradcam_out"),
    alpha: Annotated[float, typer.Option("--alpha", help="Heatmap weight in the overlay (0..1).")] = 0.5,
    bbox_threshold: Annotated[float, typer.Option(
        "--bbox-threshold", help="Box = largest region where the normalised map >= this (0..1].")] = 0.5,
    save_raw: Annotated[bool, typer.Option("--save-raw", help="Also write the float map as .npy.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip images whose requested outputs all exist (resume a job).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    nul: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", help="I/N: process a deterministic 1/N of the inputs (writes results.I-of-N.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward/backward pass.")] = 1,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Threads for decoding and PNG encoding; 0 = inline.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32, or fp16/bf16 autocast for the forward pass (for GPUs; maps stay float32).")] = "fp32",
    memory_format: Annotated[str, typer.Option(
        "--memory-format", help="auto, channels_last or contiguous layout for the model's weights.")] = "auto",
    fold_bn: Annotated[bool, typer.Option(
        "--fold-bn/--no-fold-bn", help="Fold BatchNorm into the convolution before it (faster; same maps to float rounding).")] = True,
    pretrained: PretrainedOpt = True,
    weights: WeightsOpt = None,
    num_classes: NumClassesOpt = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", readable=False, help="Class names: one per line, or JSON.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", "--jsonl", help="Stream one JSON object per image, class and layer on stdout.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed image.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but usage errors.")] = False,
) -> None:
    """Explain why the model classified each image as it did; writes PNGs and reports each result.

    Exit codes: 0 all done, 1 some image failed, 2 bad request, 130 interrupted.
    """
    from .errors import UsageError
    from .pipeline import ExplainOptions

    options = ExplainOptions(
        layers=layer or (), classes=classes or (), top_k=top_k, method=method,
        outputs=tuple(k.strip() for k in outputs.split(",") if k.strip()), alpha=alpha,
        bbox_threshold=bbox_threshold, save_raw=save_raw, overwrite=overwrite,
        batch_size=batch_size, precision=precision,
    )
    try:
        if overwrite and skip_existing:
            raise UsageError("--overwrite and --skip-existing conflict: give one or the other")
        if workers < 0:
            raise UsageError(f"--workers {workers}: must be 0 or more")
        if inputs.count("-") > 1:
            raise UsageError("- (stdin) can be given only once")
        from .inputs import collect_inputs, in_shard, parse_shard

        shard_spec = parse_shard(shard) if shard else None
        _check_output_dir(output_dir)
        items = collect_inputs(inputs, recursive=recursive, nul_separated=nul, output_dir=output_dir)
        if not items:
            raise UsageError("no input images found")
        if shard_spec:
            items = [it for it in items if in_shard(it, *shard_spec)]
        explainer = _build_explainer(model, pretrained, weights, num_classes, labels, device, memory_format, fold_bn,
                                     options)
        _create_output_dir(output_dir)
    except UsageError as err:
        raise _fail(str(err)) from None
    from .batch import MANIFEST, JobOptions

    job = JobOptions(workers=workers, skip_existing=skip_existing, fail_fast=fail_fast,
                     manifest_name=f"results.{shard_spec[0]}-of-{shard_spec[1]}.jsonl" if shard_spec else MANIFEST)
    from .console import run_with_console

    code = run_with_console(explainer, items, output_dir, job, as_json=as_json, quiet=quiet, table=not as_json)
    raise typer.Exit(code)


def _build_explainer(model, pretrained, weights, num_classes, labels, device, memory_format, fold_bn, options):
    from .device import resolve_device
    from .labels import read_labels
    from .models import load_model
    from .pipeline import Explainer

    dev = resolve_device(device)
    loaded = load_model(model, pretrained=pretrained, weights=weights, num_classes=num_classes, device=dev,
                        memory_format=memory_format, fold_bn=fold_bn)
    if labels is not None:
        loaded.labels = read_labels(labels, loaded.num_classes)
    return Explainer(loaded, options)


def _check_output_dir(output_dir: Path) -> None:
    """Fail early if ``output_dir`` cannot be created or written; creates nothing."""
    import os

    from .errors import UsageError

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
    from .errors import UsageError

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output-dir {output_dir}: cannot create ({err.strerror or err})") from None


@app.command()
def layers(
    model: ModelOpt = None,
    num_classes: NumClassesOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every module with a spatial output, not only blocks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list instead of a table.")] = False,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Reuse the table from the last listing of this model (same library versions).")] = True,
) -> None:
    """List the layers Grad-CAM can hook (spatial outputs), their shapes, and the default. No download."""
    from .errors import UsageError
    from .layer_cache import read_table, table_key, write_table

    key = table_key(model, num_classes)
    table = read_table(key) if cache else None
    if table is None:
        try:
            table = _layer_table(model, num_classes)
        except UsageError as err:
            raise _fail(str(err)) from None
        if cache:
            write_table(key, table)
    default = table["default"]
    default_depth = default.count(".") + 1
    rows = [r for r in table["layers"] if r["type"] != "Identity"
            and (show_all or r["path"].count(".") + 1 <= max(2, default_depth) or r["path"] == default)]
    if as_json:
        print(json.dumps([{"path": r["path"], "type": r["type"], "shape": r["shape"], "default": r["path"] == default}
                          for r in rows]))
        return
    from rich.console import Console
    from rich.table import Table

    h, w = table["input_size"]
    out = Table(title=f"{table['name']} at {h}x{w}: hookable layers", box=None, pad_edge=False)
    for col in ("layer", "type", "output (C, H, W)", ""):
        out.add_column(col)
    for r in rows:
        out.add_row(r["path"], r["type"], "x".join(map(str, r["shape"])), "default" if r["path"] == default else "")
    Console(soft_wrap=True).print(out)


def _layer_table(model: str | None, num_classes: int | None) -> dict:
    """The model's spatial layers in the order they finish, and its default layer (needs torch and timm)."""
    from .layers import default_layer, trace_layers
    from .models import load_architecture

    loaded = load_architecture(model, num_classes=num_classes)
    infos = trace_layers(loaded.model, loaded.preprocess.input_size)
    rows = sorted((l for l in infos if l.spatial), key=lambda l: l.finish_order)
    return {
        "name": loaded.name,
        "input_size": list(loaded.preprocess.input_size),
        "default": default_layer(loaded.model, infos),
        "layers": [{"path": l.path, "type": l.type, "shape": list(l.shape)} for l in rows],
    }


def main() -> None:
    """Console entry point."""
    from .allocator import keep_freed_memory

    keep_freed_memory()  # process-wide, so only here, before any tensor exists (see allocator.py)
    app()


if __name__ == "__main__":
    main()
