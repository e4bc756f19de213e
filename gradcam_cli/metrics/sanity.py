"""Cascading model randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A copy of the model has its parameterised blocks re-initialised one at a time from the output
down (the classifier first, then the last block, ...), cumulatively; after each step the maps are
computed again and compared with the trained model's maps by Spearman rank correlation and SSIM.
A method whose maps still correlate with the original ones once the whole network is random
explains the input, not the model: it is flagged.

The user's model is never touched: the randomisation runs on a deep copy, and the random number
generators are forked, so the caller's random state is as before.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..model.device import model_device
from ..model.hooks import installed

FLAG_CORRELATION = 0.5  # mean Spearman correlation at the last step at or above this: maps did not change
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Unit:
    """One step of the cascade: the modules re-initialised together, named by their common path."""

    name: str
    modules: tuple[nn.Module, ...]


def cascade_units(model: nn.Module, input_size: tuple[int, int]) -> list[Unit]:
    """The model's parameterised blocks, output first.

    A block is a top-level child, or, inside containers of blocks (``layer4``, ``blocks``,
    ``blocks.6``), each child; the order is the order in which their modules run, taken from
    one forward pass, reversed.
    """
    finished: dict[str, int] = {}
    owners = [(path, m) for path, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]

    def note(path: str) -> Callable:
        def hook(*_) -> None:  # a forward hook that returned a value would replace the module's output
            finished.setdefault(path, len(finished))

        return hook

    with installed(forward=[(m, note(p)) for p, m in owners]), torch.no_grad():
        model(torch.zeros(1, 3, *input_size, device=model_device(model)))
    modules = dict(model.named_modules())
    groups: dict[str, list[tuple[int, nn.Module]]] = {}
    for path, module in owners:
        groups.setdefault(_block_of(path, modules), []).append((finished.get(path, -1), module))
    order = sorted(groups, key=lambda name: max(i for i, _ in groups[name]), reverse=True)
    return [Unit(name or "(model)", tuple(m for _, m in groups[name])) for name in order]


def module_units(model: nn.Module) -> list[Unit]:
    """Every module that can reset its parameters, one per step, in reverse registration order
    (the granularity and order of Quantus' ``top_down`` model randomisation)."""
    return [Unit(path, (m,)) for path, m in reversed(list(model.named_modules())) if hasattr(m, "reset_parameters")]


def _block_of(path: str, modules: dict[str, nn.Module]) -> str:
    parts = path.split(".")
    block = parts[0]
    for part in parts[1:]:
        if not isinstance(modules[block], _CONTAINERS):
            break
        block = f"{block}.{part}"
    return block


def randomise(unit: Unit, seed: int) -> None:
    """Re-initialise every parameter of the unit's modules: ``reset_parameters`` where a module has
    one, else a normal draw with the parameter's own spread. Deterministic for a ``seed``."""
    devices = sorted({p.device.index or 0 for m in unit.modules for p in m.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for module in unit.modules:
            for sub in module.modules():
                own = list(sub.parameters(recurse=False))
                if not own:
                    continue
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
                else:
                    for p in own:
                        p.normal_(0.0, float(p.float().std()) if p.numel() > 1 else 0.02)


def cascade(
    loaded,
    units_of: Callable[[nn.Module], list[Unit]] | None = None,
    reset: Callable[[Unit, int], None] | None = None,
    seed: int = 0,
) -> Iterator[tuple[str, object]]:
    """A copy of ``loaded`` (a LoadedModel) randomised one more unit per step: yields ``(unit name, copy)``.

    ``units_of`` picks the steps (default `cascade_units`), ``reset`` re-initialises one unit
    (default `randomise` with ``seed + step``).
    """
    model = copy.deepcopy(loaded.model)
    twin = dataclasses.replace(loaded, model=model, folded=[])
    units = units_of(model) if units_of else cascade_units(model, loaded.preprocess.input_size)
    for step, unit in enumerate(units):
        (reset or (lambda u, i: randomise(u, seed + i)))(unit, step)
        yield unit.name, twin


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; a constant map shares no ranking with anything (0)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b)[0])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps in [0, 1] (scikit-image, 7x7 windows)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0))


@dataclass
class SanityCurve:
    """Similarity of the randomised model's maps to the original ones, per cascade step."""

    steps: list[str]
    spearman: list[list[float]]  # [step][sample]
    ssim: list[list[float]]

    def mean(self, which: str) -> list[float]:
        return [float(np.mean(v)) if v else float("nan") for v in getattr(self, which)]

    @property
    def flagged(self) -> bool:
        """The maps did not change: still correlated after the whole model was randomised."""
        last = self.mean("spearman")[-1:] or [0.0]
        return bool(last[0] >= FLAG_CORRELATION)


def compare(original: Sequence[np.ndarray], randomised: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-sample Spearman correlation and SSIM of maps with the same shapes."""
    pairs = list(zip(original, randomised))
    return [spearman(a, b) for a, b in pairs], [ssim(a, b) for a, b in pairs]
