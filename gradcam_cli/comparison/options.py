"""The options of ``gradcam compare`` and of the verdicts (``--fail-under``, ``--junit``) that ``gradcam evaluate``
shares, declared once as the other options are (``gradcam_cli.options.option``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..options import option

DEFAULT_PICTURES = 50


@dataclass
class VerdictOptions:
    """What makes a run fail (exit 1), and the JUnit file that says so."""

    fail_under: Sequence[str] = option(
        (),
        "--fail-under",
        repeatable=True,
        metavar="METRIC=VALUE",
        help="Fail (exit 1) when a pair's METRIC is below VALUE: spearman, ssim, top10_iou, top25_iou, box_iou, "
        "same_class, probability_change; repeatable or comma-separated.",
    )
    fail_under_mean: Sequence[str] = option(
        (),
        "--fail-under-mean",
        repeatable=True,
        metavar="METRIC=VALUE",
        help="Fail (exit 1) when METRIC's mean over the pairs is below VALUE; repeatable or comma-separated.",
    )
    junit: str | os.PathLike | None = option(
        None, "--junit", metavar="FILE", help="Also write the verdict as JUnit XML (one test case per pair)."
    )


@dataclass
class CompareOptions:
    """What ``gradcam compare`` compares and shows, beyond the verdict."""

    pictures: int = option(
        DEFAULT_PICTURES,
        "--pictures",
        metavar="N",
        help="Pictures (baseline | candidate | difference) of the N worst pairs, for the report; 0: none.",
    )
    allow_mismatch: bool = option(
        False,
        "--allow-mismatch",
        help="Compare runs that would be refused (another view, another class set), with a warning instead.",
    )
    against_model: str | None = option(
        None,
        "--against-model",
        metavar="NAME",
        help="One-process form: the candidate model (same classes as --model). Default: --model's.",
    )
    against_weights: str | os.PathLike | None = option(
        None,
        "--against-weights",
        metavar="FILE",
        help="One-process form: the candidate's checkpoint (.safetensors, .pt/.pth).",
    )

    @property
    def one_process(self) -> bool:
        return self.against_model is not None or self.against_weights is not None

    def validate(self) -> None:
        if self.pictures < 0:
            raise UsageError(f"--pictures {self.pictures}: must be 0 or more")


def bound_texts(bounds: Mapping[str, float] | Sequence[str] | str | None) -> tuple[str, ...]:
    """The Python API's bounds (``{"spearman": 0.9}``, ``"spearman=0.9"`` or a list of such) as flag values."""
    if bounds is None:
        return ()
    if isinstance(bounds, str):
        return (bounds,)
    if isinstance(bounds, Mapping):
        return tuple(f"{metric}={value}" for metric, value in bounds.items())
    return tuple(str(b) for b in bounds)
