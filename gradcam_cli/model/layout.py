"""How a hooked layer's output is laid out, and the reshape to and from ``(B, C, h, w)`` grids.

Methods work on channel-first grids. A layout converts a layer's own output to that
form (and back, for methods that replace the output); the conversion is linear
(a reshape, or a detector's feature levels resized to one grid), so gradients convert
the same way. Four layouts occur in classifiers:

- ``(B, C, h, w)`` convolutional maps (`ChannelsFirst`), used as they are;
- ``(B, h, w, C)`` channels-last stages (`ChannelsLast`: Swin, NHWC blocks);
- ``(B, P + h*w, C)`` token sequences (`Tokens`: ViT, DeiT, EVA, BEiT, Mixer), whose
  ``P`` prefix tokens (class, distillation, register tokens) are dropped from the map and
  kept as they were when a method replaces the output;
- ``(P + h*w, B, C)`` sequence-first token sequences (``nn.MultiheadAttention``'s default).

Detectors add a fifth: a feature pyramid's dict of levels (`Levels`).

`detect_layout` reads the layout of one output from its shape, the model's input
size and what the model says about itself (`model_hints`); where the shape fits
more than one reading and nothing settles it, it returns the reason instead of a guess.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MethodError

Grid = tuple[int, int]
MAX_GUESSED_PREFIX = 8  # prefix tokens considered when the model does not say how many it has
PREFIX_PARAMETERS = ("cls_token", "class_token", "dist_token", "distillation_token", "reg_token", "register_tokens")


def _grid_text(grid: Grid | None) -> str:
    return "?" if grid is None else f"{grid[0]}x{grid[1]}"


@dataclass(frozen=True)
class ChannelsFirst:
    """``(B, C, h, w)``: convolutional feature maps, used as they are."""

    grid: Grid | None = None
    name = "channels_first"
    prefix = 0
    batch_dim = 0

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def from_grid(self, grid: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return grid

    def describe(self) -> str:
        return _grid_text(self.grid)


@dataclass(frozen=True)
class ChannelsLast:
    """``(B, h, w, C)``: channels-last stages (Swin, NHWC blocks)."""

    grid: Grid | None = None
    name = "channels_last"
    prefix = 0
    batch_dim = 0

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        return output.permute(0, 3, 1, 2)

    def from_grid(self, grid: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return grid.permute(0, 2, 3, 1)

    def describe(self) -> str:
        return f"{_grid_text(self.grid)} channels-last"


@dataclass(frozen=True)
class Tokens:
    """``(B, P + h*w, C)`` token sequences, or ``(P + h*w, B, C)`` with ``sequence_first``.

    The grid tokens follow the prefix tokens in raster order (row by row), as every
    patch embedding flattens them.
    """

    grid: Grid
    prefix: int = 0
    sequence_first: bool = False
    name = "tokens"

    @property
    def batch_dim(self) -> int:
        return 1 if self.sequence_first else 0

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        x = output.transpose(0, 1) if self.sequence_first else output
        h, w = self.grid
        if x.dim() != 3 or x.shape[1] != self.prefix + h * w:
            raise MethodError(
                f"a token layer's output has shape {tuple(output.shape)}, but its layout is "
                f"{self.describe()} ({self.prefix + h * w} tokens): the input size changed?"
            )
        return x[:, self.prefix :].reshape(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)

    def from_grid(self, grid: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, C, h, w)`` grids -> ``n`` token sequences, the prefix tokens taken from ``like``
        (one image's own output, in this layout)."""
        tokens = grid.flatten(2).transpose(1, 2)  # (n, h*w, C)
        if self.prefix:
            if like is None:
                raise ValueError("a token layout with prefix tokens needs the original output to rebuild them")
            first = like.transpose(0, 1) if self.sequence_first else like
            prefix = first[:1, : self.prefix].to(tokens.dtype).expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([prefix, tokens], dim=1)
        return tokens.transpose(0, 1) if self.sequence_first else tokens

    def describe(self) -> str:
        text = f"{_grid_text(self.grid)} tokens"
        if self.prefix:
            text += f" + {self.prefix} prefix"
        return text + (", sequence-first" if self.sequence_first else "")


@dataclass(frozen=True)
class Levels:
    """A dict of ``(B, C_i, h_i, w_i)`` feature levels (a torchvision FPN's output, ``backbone`` or ``backbone.fpn``).

    The capture keeps the levels as one flat ``(B, sum C_i*h_i*w_i)`` tensor (`flatten`) and hands the model views
    of it (`unflatten`), so one gradient covers every level. The grid is pytorch-grad-cam's
    ``fasterrcnn_reshape_transform`` without its absolute value: each level resized (bilinear) to the coarsest
    level's grid and the levels concatenated along channels. That transform takes ``abs`` for EigenCAM's display;
    here the conversion stays linear, so gradients convert as activations do and keep their sign.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, int, int], ...]  # (C, h, w) per level, in the dict's order
    name = "levels"
    prefix = 0
    batch_dim = 0

    @property
    def grid(self) -> Grid:
        return min((s[1:] for s in self.shapes), key=lambda g: g[0] * g[1])

    @property
    def channels(self) -> int:
        return sum(s[0] for s in self.shapes)

    @staticmethod
    def of(output: object) -> Levels | None:
        """The levels of a dict of 4-D tensors sharing one batch, or None for anything else."""
        if not isinstance(output, Mapping) or not output:
            return None
        values = list(output.values())
        if not all(isinstance(v, torch.Tensor) and v.dim() == 4 and v.shape[0] == values[0].shape[0] for v in values):
            return None
        return Levels(tuple(str(k) for k in output), tuple(tuple(int(d) for d in v.shape[1:]) for v in values))

    def flatten(self, output: Mapping) -> torch.Tensor:
        return torch.cat([v.flatten(1) for v in output.values()], dim=1)

    def unflatten(self, flat: torch.Tensor, like: Mapping) -> Mapping:
        """Views of ``flat`` shaped as the levels, in a mapping of ``like``'s type and keys."""
        sizes = [c * h * w for c, h, w in self.shapes]
        parts = flat.split(sizes, dim=1)
        return type(like)((k, p.view(flat.shape[0], *s)) for k, p, s in zip(like, parts, self.shapes))

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        sizes = [c * h * w for c, h, w in self.shapes]
        if output.dim() != 2 or output.shape[1] != sum(sizes):
            raise MethodError(f"feature levels of shape {tuple(output.shape)} are not {self.describe()}")
        parts = [p.reshape(output.shape[0], *s) for p, s in zip(output.split(sizes, dim=1), self.shapes)]
        return torch.cat([F.interpolate(p, self.grid, mode="bilinear") for p in parts], dim=1)

    def from_grid(self, grid: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        raise MethodError(
            "the levels of a feature pyramid are resized to one grid, which cannot be undone: methods that replace "
            "the layer's output need one level's module (see `gradcam layers`)"
        )

    def describe(self) -> str:
        return f"{_grid_text(self.grid)} from {len(self.names)} levels ({', '.join(self.names)})"


Layout = ChannelsFirst | ChannelsLast | Tokens | Levels
CONV = ChannelsFirst()


def one_image(layout: Layout, output: torch.Tensor, image: int) -> torch.Tensor:
    """Image ``image`` of a batch of outputs, kept in the layout (batch of one)."""
    return output.narrow(layout.batch_dim, image, 1)


# --------------------------------------------------------------------------- what the model says


@dataclass(frozen=True)
class ModelHints:
    """What a model says about its tokens at one input size (None: it does not say)."""

    grid: Grid | None = None  # the patch grid (timm's patch_embed, torchvision's image_size // patch_size)
    prefix: int | None = None  # class + distillation + register tokens
    channels_last: bool = False  # timm's output_fmt == 'NHWC'
    seen_grids: frozenset[Grid] = frozenset()  # grids of the model's unambiguous 4-D outputs (its patch embedding's)


def _pair(value: object) -> Grid | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def _patch_embedding(model: nn.Module) -> tuple[nn.Module | None, Grid] | None:
    """A timm patch embedding (``patch_embed`` or ``stem``) and its patch size, or torchvision ViT's patch size
    (with no embedding module to ask); None for a model without one."""
    for name in ("patch_embed", "stem"):
        embed = getattr(model, name, None)
        patch = _pair(getattr(embed, "patch_size", None))
        if embed is not None and patch is not None and hasattr(embed, "grid_size"):
            return embed, patch
    patch = _pair(getattr(model, "patch_size", None))
    if patch is not None and isinstance(getattr(model, "image_size", None), int):  # torchvision ViT
        return None, patch
    return None


def patch_size(model: nn.Module) -> Grid | None:
    """The (height, width) of the model's patches, or None."""
    found = _patch_embedding(model)
    return found[1] if found else None


def _patch_grid(model: nn.Module, input_size: Grid) -> Grid | None:
    """The patch grid at ``input_size`` from a timm patch embedding or torchvision's ViT fields."""
    found = _patch_embedding(model)
    if found is None:
        return None
    embed, patch = found
    dynamic = getattr(embed, "dynamic_feat_size", None)
    if callable(dynamic):  # timm: floor, or ceil with dynamic padding
        return _pair(tuple(dynamic(tuple(input_size))))
    return input_size[0] // patch[0], input_size[1] // patch[1]


def _prefix_count(model: nn.Module) -> int | None:
    """timm's ``num_prefix_tokens``, else the tokens of the model's class/distillation/register parameters
    (at any depth: Hugging Face keeps them in ``vit.embeddings``)."""
    n = getattr(model, "num_prefix_tokens", None)
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n
    found = [p for name, p in model.named_parameters() if name.rpartition(".")[2] in PREFIX_PARAMETERS]
    if not found:
        return None
    return sum(int(p.shape[-2]) if p.dim() >= 2 else 1 for p in found)


def model_hints(model: nn.Module, input_size: Grid) -> ModelHints:
    return ModelHints(
        grid=_patch_grid(model, input_size),
        prefix=_prefix_count(model),
        channels_last=str(getattr(model, "output_fmt", "")).upper().endswith("NHWC"),
    )


# --------------------------------------------------------------------------- reading a shape


@functools.lru_cache(maxsize=64)
def plausible_grids(input_size: Grid) -> frozenset[Grid]:
    """Every grid a network can make of ``input_size``: ``H/s`` by ``W/s`` for one integer stride
    ``s``, both rounded down or both up (patch embeddings, strided and padded convolutions)."""
    height, width = input_size
    grids = set()
    for s in range(1, max(height, width) + 1):
        grids.add((height // s, width // s))
        grids.add((-(-height // s), -(-width // s)))
    return frozenset(g for g in grids if g[0] >= 1 and g[1] >= 1)


_CHANNELS_FIRST_TYPES = ("Conv", "BatchNorm", "Pool", "LayerNorm2d", "GroupNorm", "Upsample")
_CHANNELS_LAST_TYPES = ("LayerNorm", "Linear", "RmsNorm", "RMSNorm")


def _module_says(module: nn.Module | None) -> str | None:
    """``channels_first`` or ``channels_last`` when the module's own type fixes where its channels are."""
    kind = type(module).__name__ if module is not None else ""
    if any(t in kind for t in _CHANNELS_FIRST_TYPES) and not kind.endswith("1d"):
        return "channels_first"
    if kind.startswith(_CHANNELS_LAST_TYPES):
        return "channels_last"
    return None


def _four_d(
    shape: tuple[int, ...], input_size: Grid, hints: ModelHints, module: nn.Module | None
) -> Layout | str | None:
    a, b, c = shape[1:]
    grids = plausible_grids(input_size)
    first, last = (b, c) in grids, (a, b) in grids
    if first and last:
        said = _module_says(module) or ("channels_last" if hints.channels_last else None)
        if said is None:
            return (
                f"its output {tuple(shape)} reads as channels-first ({a} channels on a {b}x{c} grid) and as "
                f"channels-last (a {a}x{b} grid of {c} channels) and nothing in the model tells which"
            )
        first = said == "channels_first"
    elif not first and not last:
        first = True  # e.g. an adaptive pool's fixed grid: a convolutional map, as always
    if first:
        return ChannelsFirst((b, c)) if b * c > 1 else None
    return ChannelsLast((a, b)) if a * b > 1 else None


def _token_readings(count: int, input_size: Grid, hints: ModelHints) -> list[Tokens]:
    """The ``(grid, prefix)`` readings of ``count`` tokens; the model's own patch grid wins."""
    prefixes = sorted({0, hints.prefix}) if hints.prefix is not None else range(MAX_GUESSED_PREFIX + 1)
    if hints.grid is not None:
        known = [Tokens(hints.grid, p) for p in prefixes if count - p == hints.grid[0] * hints.grid[1]]
        if known:
            return known[:1]
    readings = [
        Tokens((h, w), p)
        for p in prefixes
        for h, w in sorted(plausible_grids(input_size))
        if h * w == count - p and h * w > 1
    ]
    seen = [r for r in readings if r.grid in hints.seen_grids]
    return seen if len(readings) > 1 and len(seen) == 1 else readings


def detect_layout(
    shape: tuple[int, ...], batch: int, input_size: Grid, hints: ModelHints, module: nn.Module | None = None
) -> Layout | str | None:
    """The layout of an output of ``shape`` (batch included) for a batch of ``batch`` images.

    Returns a layout, None when the output is no grid (logits, pooled features, per-window
    tensors whose first dimension is not the batch), or a sentence saying why the shape
    is ambiguous.
    """
    if len(shape) == 4 and shape[0] == batch:
        return _four_d(shape, input_size, hints, module)
    if len(shape) != 3 or batch not in shape[:2]:
        return None
    sequence_first = shape[0] != batch
    count = shape[0] if sequence_first else shape[1]
    readings = _token_readings(count, input_size, hints)
    if not readings:
        return None
    if len(readings) > 1:
        options = ", ".join(r.describe() for r in readings)
        return (
            f"its {count} tokens (output {tuple(shape)}) fit several grids ({options}) and the model does not say which"
        )
    reading = readings[0]
    return Tokens(reading.grid, reading.prefix, sequence_first)
