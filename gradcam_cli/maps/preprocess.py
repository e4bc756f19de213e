"""The model's own eval transform (resize, center crop, normalise), with its geometry kept.

We resize and crop ourselves rather than through an opaque transform pipeline so
that every map can be placed back onto the original photo pixel for pixel.

Two views of a photo: ``crop`` is the eval transform as the model's authors define it;
``full`` resizes the same way (the shorter side to the transform's resize target, the
aspect ratio kept) but crops nothing, so the model sees, and the map covers, the whole
photo. Only models that take inputs of other sizes can be given the full view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """What a classifier expects: crop size, the resize before it, and normalisation."""

    input_size: tuple[int, int]  # (height, width) fed to the model
    resize: tuple[int, int] | int  # int: shorter side; tuple: exact (height, width)
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # The full view's input sides are multiples of these (height, width): a patch embedding's patch size, so
    # that the token grid covers the input exactly and the map lines up with the photo to the pixel.
    size_multiple: tuple[int, int] = (1, 1)
    # A detector's rule (torchvision's): the longer side at most this, even if the shorter side then falls short.
    max_size: int | None = None

    @classmethod
    def from_timm(cls, cfg: dict) -> PreprocessConfig:
        """From ``timm.data.resolve_data_config``; mirrors timm's eval transform ('center'/'squash')."""
        _, h, w = cfg["input_size"]
        crop_pct = cfg.get("crop_pct") or 0.875
        scale = (math.floor(h / crop_pct), math.floor(w / crop_pct))
        mode = cfg.get("crop_mode") or "center"
        if mode == "squash" or h != w:
            resize: tuple[int, int] | int = scale
        else:
            resize = scale[0]
        return cls((h, w), resize, str(cfg.get("interpolation") or "bicubic"), tuple(cfg["mean"]), tuple(cfg["std"]))


@dataclass(frozen=True)
class CropGeometry:
    """Where the model's input came from in the original photo."""

    original_size: tuple[int, int]  # (width, height)
    resized_size: tuple[int, int]  # (width, height) after the resize
    crop_box: tuple[int, int, int, int]  # (left, top, width, height) in resized pixels

    def crop_box_in_original(self) -> tuple[float, float, float, float]:
        """The crop as ``(x0, y0, x1, y1)`` in original pixels (floats)."""
        sx = self.resized_size[0] / self.original_size[0]
        sy = self.resized_size[1] / self.original_size[1]
        left, top, cw, ch = self.crop_box
        return left / sx, top / sy, (left + cw) / sx, (top + ch) / sy


def _resized_size(width: int, height: int, resize: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(resize, int):
        # torchvision's rule for Resize(int): shorter side to `resize`, longer side truncated.
        if width <= height:
            return resize, max(1, int(resize * height / width))
        return max(1, int(resize * width / height)), resize
    return resize[1], resize[0]


# In the full view a photo's longer side is at most this many times the model's input side, so a
# panorama or a 1-pixel strip cannot become a gigantic input; such photos are seen at a smaller scale.
FULL_VIEW_MAX_ASPECT = 4


def full_geometry(width: int, height: int, config: PreprocessConfig) -> CropGeometry:
    """The whole ``width x height`` photo at the scale the crop view sees it: resized, not cropped."""
    short = config.resize if isinstance(config.resize, int) else min(config.resize)
    rw, rh = _resized_size(width, height, short)
    if config.max_size is not None:
        scale = min(short / min(width, height), config.max_size / max(width, height))
        rw, rh = max(1, int(width * scale)), max(1, int(height * scale))
    longest = FULL_VIEW_MAX_ASPECT * max(config.input_size)
    if max(rw, rh) > longest:
        scale = longest / max(width, height)
        rw, rh = max(1, round(width * scale)), max(1, round(height * scale))
    mh, mw = config.size_multiple
    rw, rh = max(mw, round(rw / mw) * mw), max(mh, round(rh / mh) * mh)  # the aspect moves by half a patch at most
    return CropGeometry((width, height), (rw, rh), (0, 0, rw, rh))


def geometry_for(width: int, height: int, config: PreprocessConfig, view: str = "crop") -> CropGeometry:
    """The resize and center crop that ``config`` applies to a ``width x height`` photo (``view="full"``: no crop)."""
    if view == "full":
        return full_geometry(width, height, config)
    rw, rh = _resized_size(width, height, config.resize)
    ch, cw = config.input_size
    # torchvision's CenterCrop rounding; a crop larger than the image pads symmetrically.
    top = int(round((rh - ch) / 2.0))
    left = int(round((rw - cw) / 2.0))
    return CropGeometry((width, height), (rw, rh), (left, top, cw, ch))


def to_model_input(rgb: np.ndarray, config: PreprocessConfig, view: str = "crop") -> tuple[torch.Tensor, CropGeometry]:
    """``(H, W, 3) uint8`` photo -> normalised ``(3, h, w)`` float tensor and its geometry."""
    height, width = rgb.shape[:2]
    geometry = geometry_for(width, height, config, view)
    img = Image.fromarray(rgb)
    left, top, cw, ch = geometry.crop_box
    rw, rh = geometry.resized_size
    resample = _PIL_INTERPOLATION.get(config.interpolation, Image.Resampling.BILINEAR)
    if rw * rh > 16 * cw * ch:
        # Extreme aspect ratios (a 1x50000 strip) would resize to gigabytes before cropping:
        # resample only the source region that the crop keeps, onto a black canvas.
        x0, y0, x1, y1 = max(0, left), max(0, top), min(rw, left + cw), min(rh, top + ch)
        sx, sy = width / rw, height / rh
        part = img.resize((x1 - x0, y1 - y0), resample, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy))
        img = Image.new("RGB", (cw, ch))
        img.paste(part, (x0 - left, y0 - top))
    else:
        if (rw, rh) != (width, height):
            img = img.resize((rw, rh), resample)
        img = img.crop((left, top, left + cw, top + ch))  # pads with black outside, like torchvision
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), geometry
