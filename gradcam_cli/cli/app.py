"""The Typer application and the options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Explain image-classifier decisions with the CAM family: heatmaps, overlays, guided images, boxes.",
)

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="timm name (resnet50), or torchvision/NAME. Default: bundled EfficientNet-Lite0.")]
PretrainedOpt = Annotated[bool, typer.Option(
    "--pretrained/--no-pretrained", help="Download pretrained weights (default) or use random init.")]
WeightsOpt = Annotated[Optional[Path], typer.Option(
    "--weights", readable=False, help="Local checkpoint (.safetensors, or .pt/.pth read with weights_only=True).")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Classifier width for fine-tuned heads.")]
LabelsOpt = Annotated[Optional[Path], typer.Option(
    "--labels", readable=False, help="Class names: one per line, or JSON.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
MemoryFormatOpt = Annotated[str, typer.Option(
    "--memory-format", help="auto, channels_last or contiguous layout for the model's weights.")]
FoldBnOpt = Annotated[bool, typer.Option(
    "--fold-bn/--no-fold-bn", help="Fold BatchNorm into the convolution before it (faster; same maps to float rounding).")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``gradcam: error: message`` on stderr; the caller raises the returned exit."""
    typer.echo(f"gradcam: error: {message}", err=True)
    return typer.Exit(code)


# Where a job runs; shared by the commands that run jobs over many images.
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="local: this process; ray: actors on a Ray cluster (pip install \"gradcam-cli[ray]\").")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="With --engine ray: join this cluster (ray start --head prints it). Default: start Ray here.")]
ActorsOpt = Annotated[Optional[int], typer.Option(
    "--actors", help="With --engine ray: model copies working in parallel. Default: one per GPU share, else one.")]
GpusPerActorOpt = Annotated[float, typer.Option(
    "--gpus-per-actor", help="With --engine ray: GPUs each actor gets (1: one actor per GPU; 0.5: two share one).")]
