"""PNG plots of an evaluation, drawn with matplotlib's object interface (no global backend is set).

matplotlib is imported here only, when plots are asked for.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from .measurements import Measurements


def _figure(rows: int = 1, cols: int = 1, width: float = 6.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.2 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(summary: dict) -> str:
    return f"{summary['method']} @ {summary['layer']}"


def sweep_plot(summaries: Sequence[dict]) -> bytes:
    """BoxAcc at IoU 0.5 against the threshold, one line per method and layer; the operating threshold dashed."""
    fig, axes = _figure()
    ax = axes[0, 0]
    for s in summaries:
        ax.plot(s["sweep"]["threshold"], [v or 0 for v in s["sweep"]["boxacc_0.5"]], label=_label(s))
    if summaries:
        ax.axvline(summaries[0]["bbox_threshold"], color="grey", linestyle="--", linewidth=1, label="--bbox-threshold")
    ax.set(
        xlabel="threshold on the normalised map",
        ylabel="BoxAcc (IoU >= 0.5)",
        ylim=(0, 1.02),
        title="Localisation against the box threshold",
    )
    ax.legend(fontsize="small")
    return _png(fig)


def curves_plot(m: Measurements, summaries: Sequence[dict]) -> bytes:
    """Mean deletion and insertion curves (class probability against the fraction of pixels)."""
    fig, axes = _figure(1, 2, width=11)
    for s, key in zip(summaries, m.keys):
        curves = m.faithfulness.get(key) or []
        if not curves:
            continue
        x = curves[0].fractions
        for ax, name in zip(axes[0], ("deletion", "insertion")):
            ax.plot(
                x,
                np.mean([getattr(c, name) for c in curves], axis=0),
                label=f"{_label(s)} (AUC {s[f'{name}_auc']:.3f})",
            )
    for ax, name, hint in zip(axes[0], ("Deletion", "Insertion"), ("lower is better", "higher is better")):
        ax.set(xlabel="fraction of pixels", ylabel="class probability", title=f"{name} ({hint})", ylim=(0, None))
        ax.legend(fontsize="small")
    return _png(fig)


def sanity_plot(summaries: Sequence[dict]) -> bytes:
    """Spearman correlation and SSIM with the trained model's maps along the cascade."""
    fig, axes = _figure(1, 2, width=12)
    for s in summaries:
        steps = s.get("sanity") or []
        x = np.arange(len(steps))
        for ax, name in zip(axes[0], ("spearman", "ssim")):
            ax.plot(x, [np.nan if st[name] is None else st[name] for st in steps], marker="o", label=_label(s))
    names = [st["randomised"] for st in (summaries[0].get("sanity") or [])] if summaries else []
    for ax, title in zip(axes[0], ("Spearman rank correlation", "SSIM")):
        ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize="small")
        ax.set(xlabel="randomised down to", ylabel=title, title=f"Cascading randomisation: {title}", ylim=(-0.2, 1.02))
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(fontsize="small")
    return _png(fig)
