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
