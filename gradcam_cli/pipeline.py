"""From image files to explanation records and PNGs: batching, post-processing, writing.

This is the layer the CLI and the Python API share. It knows the engine and model
loading on one side and rendering on the other; it does no argument parsing and no
printing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import cam_math, outputs, render
from .device import host_to_device
from .engine import METHODS, autocast_for, check_cam_applies, explain_batch
from .errors import UsageError
from .fusion import unfold_conv
from .labels import resolve_class
from .layers import LayerInfo, default_layer, resolve_layer, trace_layers
from .models import LoadedModel
from .outputs import KINDS, encode_npy, encode_png, output_path
from .placement import place_on_original
from .preprocess import CropGeometry, to_model_input

DEFAULT_BBOX_THRESHOLD = 0.5


@dataclass
class ExplainOptions:
    """Everything that shapes an explanation run besides the model and the inputs."""

    layers: Sequence[str] = ()  # empty: the model's default layer
    classes: Sequence[str | int] = ()  # empty: the top-k predictions
    top_k: int = 1
    method: str = "gradcam"
    outputs: Sequence[str] = KINDS
    alpha: float = 0.5
    bbox_threshold: float = DEFAULT_BBOX_THRESHOLD
    save_raw: bool = False
    overwrite: bool = False
    batch_size: int = 1
    precision: str = "fp32"  # fp32, or fp16/bf16 autocast for the forward pass


@dataclass
class Explanation:
    """One (image, class, layer) result; ``map`` is at the photo's resolution, in [0, 1]."""

    class_index: int
    class_name: str | None
    probability: float
    score: float
    layer: str
    method: str
    map: np.ndarray  # (H, W) float32
    empty: bool  # the map had no positive evidence (all zero) or was not finite
    bbox: render.BBox | None
    guided: np.ndarray | None = None  # (H, W, 3) uint8 Guided Grad-CAM image
    rank: int = 1
    warnings: tuple[str, ...] = ()


class Explainer:
    """A loaded model with resolved layers and classes, ready to explain images."""

    def __init__(self, loaded: LoadedModel, options: ExplainOptions | None = None) -> None:
        self.loaded = loaded
        self.options = options or ExplainOptions()
        opts = self.options
        if opts.method not in METHODS:
            raise UsageError(f"--method {opts.method}: unknown; choose from {', '.join(METHODS)}")
        unknown = [k for k in opts.outputs if k not in KINDS]
        if unknown:
            raise UsageError(f"--outputs {','.join(unknown)}: unknown; choose from {', '.join(KINDS)}")
        if opts.top_k < 1:
            raise UsageError(f"--top-k {opts.top_k}: must be at least 1")
        if opts.classes and opts.top_k != 1:
            raise UsageError("--class and --top-k conflict: give one or the other")
        if not 0.0 <= opts.alpha <= 1.0:
            raise UsageError(f"--alpha {opts.alpha}: must be between 0 and 1")
        if not 0.0 < opts.bbox_threshold <= 1.0:
            raise UsageError(f"--bbox-threshold {opts.bbox_threshold}: must be in (0, 1]")
        if opts.batch_size < 1:
            raise UsageError(f"--batch-size {opts.batch_size}: must be at least 1")
        model = loaded.model
        self.layer_infos: list[LayerInfo] = trace_layers(model, loaded.preprocess.input_size)
        self.default_layer = default_layer(model, self.layer_infos)
        paths = list(dict.fromkeys(opts.layers)) or [self.default_layer]
        if self._unfold_hooked_convs(paths):
            self.layer_infos = trace_layers(model, loaded.preprocess.input_size)
        self.layers = {p: resolve_layer(model, p, self.layer_infos) for p in paths}
        self.classes = [resolve_class(c, loaded.labels, loaded.num_classes) for c in dict.fromkeys(opts.classes)]
        self.guided = "guided" in opts.outputs
        autocast_for(self.device, opts.precision)  # refuses an unknown or unsupported precision up front
        if opts.method == "cam":
            check_cam_applies(model, self.layers, loaded.preprocess.input_size)

    def _unfold_hooked_convs(self, paths: Sequence[str]) -> bool:
        """A hooked convolution must output its own result, not the BatchNorm folded into it."""
        hooked = [pair for pair in self.loaded.folded if pair.conv_path in paths]
        for pair in hooked:
            unfold_conv(self.loaded.model, pair)
            self.loaded.folded.remove(pair)
        return bool(hooked)

    @property
    def device(self) -> torch.device:
        return next((p.device for p in self.loaded.model.parameters()), torch.device("cpu"))

    def class_name(self, index: int) -> str | None:
        labels = self.loaded.labels
        return labels[index] if labels and 0 <= index < len(labels) else None

    def prepare(self, photo: np.ndarray) -> tuple[torch.Tensor, CropGeometry]:
        """The model's input for one photo (CPU tensor) and where it came from; safe to run in a worker."""
        return to_model_input(photo, self.loaded.preprocess)

    def explain_arrays(self, photos: Sequence[np.ndarray]) -> list[list[Explanation]]:
        """Explain RGB uint8 photos in one batch; one list of explanations per photo."""
        prepared = [self.prepare(p) for p in photos]
        return self.explain_prepared([t for t, _ in prepared], [g for _, g in prepared])

    def explain_prepared(self, tensors: Sequence[torch.Tensor],
                         geometries: Sequence[CropGeometry]) -> list[list[Explanation]]:
        """Explain already preprocessed photos in one forward pass."""
        inputs = host_to_device(torch.stack(list(tensors)), self.device)
        opts = self.options
        result = explain_batch(self.loaded.model, inputs, self.layers, classes=self.classes, top_k=opts.top_k,
                               method=opts.method, guided=self.guided, precision=opts.precision)
        probs = torch.softmax(result.logits.float(), dim=1)
        finite_logits = torch.isfinite(result.logits).all(dim=1).tolist()
        crop_hw = tuple(inputs.shape[-2:])
        out: list[list[Explanation]] = [[] for _ in geometries]
        for path, raw in result.maps.items():
            scaled, empty = cam_math.normalize_minmax(raw.float())  # (B, K, h, w)
            for b, geometry in enumerate(geometries):
                placed = place_on_original(scaled[b][:, None], geometry)[:, 0].cpu().numpy()
                guided_imgs = self._guided_images(result.guided[b], scaled[b], crop_hw, geometry) \
                    if result.guided is not None else [None] * placed.shape[0]
                raw_finite = torch.isfinite(raw[b]).flatten(1).all(dim=1).tolist()
                for k in range(placed.shape[0]):
                    c = int(result.classes[b, k])
                    warnings = []
                    if not finite_logits[b]:
                        warnings.append("model output is not finite (NaN/Inf); scores are null")
                    if not raw_finite[k]:
                        warnings.append("map had non-finite values, treated as zero")
                    if bool(empty[b, k]):
                        warnings.append("map is empty: no positive evidence at this layer (zero gradient or constant activation)")
                    out[b].append(Explanation(
                        class_index=c,
                        class_name=self.class_name(c),
                        probability=float(probs[b, c]),
                        score=float(result.logits[b, c]),
                        layer=path,
                        method=opts.method,
                        map=placed[k],
                        empty=bool(empty[b, k]),
                        bbox=render.bbox_from_map(placed[k], opts.bbox_threshold),
                        guided=guided_imgs[k],
                        rank=k + 1,
                        warnings=tuple(warnings),
                    ))
        return out

    @staticmethod
    def _guided_images(guided: torch.Tensor, scaled: torch.Tensor, crop_hw: tuple[int, int],
                       geometry: CropGeometry) -> list[np.ndarray]:
        """Guided Grad-CAM: guided gradients times the map upsampled to the crop, placed on the photo."""
        cam_on_crop = cam_math.upsample_to(scaled, crop_hw)  # (K, hc, wc)
        product = guided.float() * cam_on_crop[:, None]  # (K, 3, hc, wc)
        images = render.guided_image(place_on_original(product, geometry), product).cpu().numpy()
        return list(images)

    # --- files -----------------------------------------------------------------------------

    def planned_files(self, image_stem: str, out_dir: Path, e: Explanation) -> dict[str, Path]:
        """The files one explanation is written to, by kind."""
        files = {kind: output_path(out_dir, image_stem, e.method, e.layer, e.class_index, kind)
                 for kind in self.options.outputs}
        if self.options.save_raw:
            files["raw"] = output_path(out_dir, image_stem, e.method, e.layer, e.class_index, "map", ".npy")
        return files

    def encode_outputs(self, photo: np.ndarray, e: Explanation, files: dict[str, Path]) -> dict[Path, bytes]:
        """Render and encode every requested output of one explanation (bytes by path).

        Serially: with fpng a PNG takes 1-2 ms, and a thread per file measured no faster;
        batch jobs already encode different images in their writer threads.
        """
        heat = render.colorize(e.map) if {"heatmap", "overlay"} & files.keys() else None  # shared by both

        def encode(kind: str) -> bytes:
            if kind == "heatmap":
                return encode_png(heat)
            if kind == "overlay":
                return encode_png(render.overlay(photo, heat, self.options.alpha), photographic=True)
            if kind == "guided":
                return encode_png(e.guided)
            if kind == "bbox":
                label = f"{e.class_name or e.class_index} {e.probability:.2f}"
                return encode_png(render.draw_bbox(photo, e.bbox, label), photographic=True)
            if kind == "raw":
                return encode_npy(e.map)
            raise ValueError(kind)

        return {path: encode(kind) for kind, path in files.items()}

    def write_explanation(self, photo: np.ndarray, e: Explanation, files: dict[str, Path]) -> None:
        """Render and write every requested output of one explanation (all files, or none)."""
        outputs.write_all_atomic(self.encode_outputs(photo, e, files))

    def record(self, source: str, photo: np.ndarray, e: Explanation, files: dict[str, Path], seconds: float) -> dict:
        """The JSON record of one explanation (schema: gradcam_cli/record.schema.json)."""
        return {
            "input": source,
            "model": self.loaded.name,
            "weights": self.loaded.weights,
            "layer": e.layer,
            "method": e.method,
            "rank": e.rank,
            "class_index": e.class_index,
            "class_name": e.class_name,
            "probability": _finite_or_none(e.probability),
            "score": _finite_or_none(e.score),
            "bbox": list(e.bbox) if e.bbox else None,
            "image_size": [int(photo.shape[1]), int(photo.shape[0])],
            "map_empty": e.empty,
            "files": {k: str(v) for k, v in files.items()},
            "time_s": round(seconds, 4),
            "warnings": list(e.warnings),
        }


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a non-finite number is reported as null (with a warning in the record)."""
    return round(value, 6) if np.isfinite(value) else None
