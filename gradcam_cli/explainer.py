"""A loaded model made ready to explain photos: layers, classes and methods resolved once, then
photos in, `Explanation` objects out (maps at the photo's resolution, boxes, guided images).

It knows the engine and the model on one side and the maps' geometry on the other; it
writes no file and prints nothing (``job/`` and ``output/`` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .errors import MethodError, UsageError
from .maps.boxes import WHOLE_PHOTO_SHARE, BBox, Region, box_share, no_box_reason, regions_from_map, whole_photo_note
from .maps.placement import place_on_original
from .maps.preprocess import CropGeometry, PreprocessConfig, full_geometry, to_model_input
from .maps.scale import normalize_minmax, upsample_to
from .methods import ATTENTION_LAYER, INPUT_LAYER, METHODS, fused_layer
from .model.attention import require_sites
from .model.detectors import task_default_layer
from .model.device import autocast_for, host_to_device, model_device
from .model.fusion import unfold_conv
from .model.labels import resolve_classes
from .model.layers import LayerInfo, default_layer, layer_layouts, resolve_layer, trace_layers
from .model.layout import Layout, Levels, Tokens, patch_size
from .model.loading import LoadedModel
from .model.stages import expand_stages
from .model.tasks import DETECTOR, SEGMENTER
from .options import ExplainOptions, ModelOptions, check_request
from .output.render import guided_image
from .passes import BatchExplanation, PassState, cam_failures, explain_batch, logits_of
from .targets.build import target_for


@dataclass
class Explanation:
    """One (image, method, layer, class) result; ``map`` is at the photo's resolution, in [0, 1].

    "Class" is what the target explains (``targets/``): a class, a class against another, a detection, a
    segment, the similarity to a reference; ``target_fields`` say which (for the record).
    """

    class_index: int | None  # None: the target explains no class (similarity, a function of the output)
    class_name: str | None
    probability: float | None  # None: the target has no probability (similarity)
    score: float  # the class logit y^c where the output has class logits, else the target's value
    layer: str
    method: str
    map: np.ndarray  # (H, W) float32
    empty: bool  # the map had no positive evidence (all zero) or was not finite
    bbox: BBox | None  # the largest region's box
    guided: np.ndarray | None = None  # (H, W, 3) uint8 guided image (guided backprop x this map)
    rank: int = 1
    warnings: tuple[str, ...] = ()
    grid: tuple[int, int] = (0, 0)  # (h, w) of the map before it was placed on the photo
    class_specific: bool = True
    regions: tuple[Region, ...] = ()  # the largest region, or every region with --bbox-mode all
    guided_raw: np.ndarray | None = None  # (H, W, 3) float32 guided gradient x map, kept with --save-raw
    layout: str = "channels_first"  # how the layer's output was read as the grid: channels_last, tokens, input
    prefix_tokens: int = 0  # class/distillation/register tokens left out of a token grid
    view: str = "crop"  # what the model saw: its own eval transform (crop), or the whole photo (full)
    box_covers_photo: bool = False  # the box spans at least WHOLE_PHOTO_SHARE of the photo: it singles out nothing
    target: str = "class"  # what was explained (gradcam_cli.targets.TARGETS, or custom)
    target_value: float | None = None  # the target's score on the photo (the scalar the map explains)
    target_fields: dict = field(default_factory=dict)  # versus class, head, reference, detection, mask area
    slot: str = ""  # its part of file names: c243, c243-vs-250, d1, sim
    mask: np.ndarray | None = None  # (H, W) bool: a segment's predicted mask on the photo, kept with --save-raw


class Explainer:
    """A loaded model with resolved layers, classes and methods, ready to explain photos."""

    def __init__(self, loaded: LoadedModel, options: ExplainOptions | None = None) -> None:
        self.loaded = loaded
        self.options = options or ExplainOptions()
        opts = self.options
        opts.validate()
        self.methods = [METHODS[m] for m in dict.fromkeys(opts.methods)]
        self.layouts: dict[str, Layout] = {}  # per hooked layer, at the model's input size
        self._layouts_at: dict[tuple[int, int], dict[str, Layout]] = {}
        self.layers = self._resolve_layers() if any(m.uses_layer for m in self.methods) else {}
        self.classes = resolve_classes(opts.classes, loaded.labels, loaded.num_classes)
        self.guided = "guided" in opts.outputs
        multiple = patch_size(loaded.model) or loaded.preprocess.size_multiple
        self.preprocess = replace(loaded.preprocess, size_multiple=multiple)
        self.view = loaded.view or self._resolve_view(opts.view)
        self.states: dict[tuple[int, int], PassState] = {}  # by input size: the full view's inputs vary
        autocast_for(self.device, opts.precision)  # refuses a precision the device cannot run
        self.target = target_for(opts, loaded, self.prepare)
        self._check_target()
        self.skipped = self._cam_skipped() if any(m.name == "cam" for m in self.methods) else {}
        attention = [m.name for m in self.methods if m.map_layer == ATTENTION_LAYER]
        if attention:  # a model without attention is refused before any photo is read
            require_sites(loaded.model, attention[0])

    def _check_target(self) -> None:
        """The methods the target cannot serve, refused before any photo is read."""
        if any(m.name == "cam" for m in self.methods) and not self.target.class_logit:
            raise MethodError(
                f"--method cam: its classifier weights explain the class logit, not the {self.target.name} target"
            )
        if self.options.smooth == "aug" and self.target.geometric:
            raise MethodError(
                f"--smooth aug: the {self.target.name} target's boxes and masks would not follow the flipped copies"
            )

    def _cam_skipped(self) -> dict[tuple[str, str], str]:
        """CAM at the layers its head does not follow: skipped, with the reason; at none of them, refused."""
        failures = cam_failures(self.loaded.model, self.layers, self.loaded.preprocess.input_size, self.layouts)
        if failures and len(failures) == len(self.layers):
            raise MethodError(next(iter(failures.values())))
        return {("cam", layer): reason for layer, reason in failures.items()}

    @property
    def notices(self) -> list[str]:
        """What a user should hear before the run: the (method, layer) pairs skipped, and why."""
        return [f"{reason}; skipped at that layer" for reason in self.skipped.values()]

    @classmethod
    def from_options(cls, model: ModelOptions, options: ExplainOptions) -> Explainer:
        """Load the model that ``model`` names and resolve ``options`` on it (both validated first)."""
        from .model.device import resolve_device
        from .model.labels import check_label_count, read_label_file
        from .model.loading import load_model

        check_request(model, options)  # before the model is built: a bad request costs no load
        loaded = load_model(
            model.name,
            pretrained=model.pretrained,
            weights=model.weights,
            num_classes=model.num_classes,
            device=resolve_device(model.device),
            memory_format=model.memory_format,
            fold_bn=model.fold_bn,
        )
        if model.labels is not None:
            declared = read_label_file(model.labels)
            loaded.labels = check_label_count(declared.names, model.labels, loaded.num_classes)
            loaded.head = declared.head
        return cls(loaded, options)

    def _resolve_layers(self) -> dict[str, torch.nn.Module]:
        """The hooked modules by path (the model's default layer when none is asked for)."""
        model = self.loaded.model
        self.layer_infos: list[LayerInfo] = trace_layers(model, self.loaded.preprocess.input_size)
        if self.loaded.kind in (DETECTOR, SEGMENTER):
            self.default_layer = task_default_layer(model, self.layer_infos, self.loaded.kind)
        else:
            self.default_layer = default_layer(model, self.layer_infos)
        asked = list(dict.fromkeys(self.options.layers))
        paths = expand_stages(asked, model, self.layer_infos) or [self.default_layer]
        self._unfold_hooked_convs(paths)  # a conv's output shape is the same folded or not: no re-trace
        layers = {p: resolve_layer(model, p, self.layer_infos, self.default_layer) for p in paths}
        infos = {layer.path: layer for layer in self.layer_infos}
        self.layouts = {p: infos[p].layout for p in paths}
        self._layouts_at[tuple(self.loaded.preprocess.input_size)] = self.layouts
        return layers

    def layouts_for(self, input_size: tuple[int, int]) -> dict[str, Layout]:
        """The hooked layers' layouts for inputs of ``input_size`` (token grids and pyramid levels follow its size)."""
        size = (int(input_size[0]), int(input_size[1]))
        if size not in self._layouts_at:
            if all(not isinstance(layout, (Tokens, Levels)) for layout in self.layouts.values()):
                self._layouts_at[size] = self.layouts  # a grid's layout does not depend on its size: no probe pass
            else:
                self._layouts_at[size] = layer_layouts(self.loaded.model, self.layers, size) if self.layers else {}
        return self._layouts_at[size]

    def _unfold_hooked_convs(self, paths: Sequence[str]) -> None:
        """A hooked convolution must output its own result, not the BatchNorm folded into it."""
        for pair in [p for p in self.loaded.folded if p.conv_path in paths]:
            unfold_conv(self.loaded.model, pair)
            self.loaded.folded.remove(pair)

    def _resolve_view(self, view: str) -> str:
        """``crop`` or ``full``: the full view only for a model that takes another input size."""
        if view == "crop":
            return view
        failure = full_view_failure(self.loaded, self.preprocess)
        if failure is None:
            return "full"
        if view == "auto":
            return "crop"
        raise UsageError(f"--view full: {self.loaded.name} {failure}; use --view crop")

    @property
    def device(self) -> torch.device:
        return model_device(self.loaded.model)

    def class_name(self, index: int) -> str | None:
        labels = self.loaded.labels
        return labels[index] if labels and 0 <= index < len(labels) else None

    def map_keys(self) -> list[tuple[str, str]]:
        """Every (method, layer) this explainer produces, in output order."""
        return [
            (m.name, path) for m in self.methods for path in self._map_layers(m) if (m.name, path) not in self.skipped
        ]

    def _map_layers(self, method) -> list[str]:
        """Where a method's maps are: each hooked layer, the input or the attention, or one map fused from all
        the layers."""
        if not method.uses_layer:
            return [method.map_layer]
        return [fused_layer(self.layers)] if method.fuses_layers else list(self.layers)

    @property
    def layer_order(self) -> list[str]:
        """The explained layers in model order (the order they finish in a forward pass), the input first and,
        when an attention method runs, the attention (every block's) last."""
        finish = {layer.path: layer.finish_order for layer in getattr(self, "layer_infos", [])}
        attention = [ATTENTION_LAYER] if any(m.map_layer == ATTENTION_LAYER for m in self.methods) else []
        return [INPUT_LAYER] + sorted(self.layers, key=lambda p: finish.get(p, len(finish))) + attention

    def prepare(self, photo: np.ndarray) -> tuple[torch.Tensor, CropGeometry]:
        """The model's input for one photo (CPU tensor) and where it came from; safe to run in a worker."""
        return to_model_input(photo, self.preprocess, self.view)

    @staticmethod
    def prepare_tensor(tensor: torch.Tensor) -> tuple[torch.Tensor, CropGeometry]:
        """A ``(3, H, W)`` tensor that already is the model's input, with the geometry of its own size."""
        h, w = tensor.shape[-2:]
        return tensor.detach().float().cpu(), CropGeometry((w, h), (w, h), (0, 0, w, h))

    def explain_arrays(self, photos: Sequence[np.ndarray]) -> list[list[Explanation]]:
        """Explain RGB uint8 photos in one batch; one list of explanations per photo."""
        prepared = [self.prepare(p) for p in photos]
        return self.explain_prepared([t for t, _ in prepared], [g for _, g in prepared])

    def run_passes(
        self,
        inputs: torch.Tensor,
        classes: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        target: object = None,
    ) -> BatchExplanation:
        """The passes of one batch of equally sized inputs on the model's device; ``classes`` ``(B, K)``
        replaces the explainer's classes (one set per image); ``boxes`` ``(B, K, 4)``: a detector's boxes to
        explain (in the input's pixels); ``target`` replaces the explainer's target (``gradcam evaluate`` on a
        detector explains the annotated objects)."""
        opts = self.options
        state = self.states.setdefault(tuple(inputs.shape[-2:]), PassState())
        return explain_batch(
            self.loaded.model,
            inputs,
            self.layers,
            classes=self.classes if classes is None else classes,
            top_k=opts.top_k,
            methods=[m.name for m in self.methods],
            guided=self.guided,
            precision=opts.precision,
            smooth=opts.smooth,
            settings={**opts.method_settings, "input_mean": self.preprocess.mean, "input_std": self.preprocess.std},
            batch_size=opts.perturbation_batch_size,
            state=state,
            layouts=self.layouts_for(tuple(inputs.shape[-2:])),
            skip=frozenset(self.skipped),
            target=self.target if target is None else target,
            boxes=boxes,
        )

    def explain_prepared(
        self, tensors: Sequence[torch.Tensor], geometries: Sequence[CropGeometry]
    ) -> list[list[Explanation]]:
        """Explain already preprocessed photos, one forward pass per input size (one in the crop view)."""
        groups = same_size_groups(tensors)
        if len(groups) > 1:
            out: list[list[Explanation]] = [[] for _ in tensors]
            for group in groups:
                for i, exps in zip(
                    group, self.explain_prepared([tensors[i] for i in group], [geometries[i] for i in group])
                ):
                    out[i] = exps
            return out
        inputs = host_to_device(torch.stack(list(tensors)), self.device)
        opts = self.options
        result = self.run_passes(inputs, boxes=self._given_boxes(geometries, inputs.device))
        facts = [self._slot_facts(result, b, geometry) for b, geometry in enumerate(geometries)]
        out = [[] for _ in geometries]
        for (method, layer), raw in result.maps.items():
            scaled, empty = normalize_minmax(raw.float())  # (B, K, h, w)
            for b, geometry in enumerate(geometries):
                count = result.slots.counts[b]  # the image's real slots; the rest only pad the batch
                placed = place_on_original(scaled[b][:count, None], geometry)[:, 0].cpu().numpy()
                guided, guided_raw = (
                    self._guided_images(
                        result.guided[b][:count], scaled[b][:count], tuple(inputs.shape[-2:]), geometry, opts.save_raw
                    )
                    if result.guided is not None
                    else ([None] * count,) * 2
                )
                for k in range(count):
                    out[b].append(
                        self._explanation(
                            (method, layer),
                            raw[b, k],
                            placed[k],
                            bool(empty[b, k]),
                            facts[b][k],
                            (guided[k], guided_raw[k]),
                            result.layouts.get(layer),
                        )
                    )
        return out

    def _given_boxes(self, geometries: Sequence[CropGeometry], device: torch.device) -> torch.Tensor | None:
        """``--box`` (photo pixels) in each input's pixels: ``(B, K, 4)``, or None when no box is given."""
        if not self.options.boxes:
            return None
        from .targets import parse_box

        rows = []
        for geometry in geometries:
            (width, height), (rw, rh), (left, top, _, _) = (
                geometry.original_size,
                geometry.resized_size,
                geometry.crop_box,
            )
            sx, sy = rw / width, rh / height
            rows.append(
                [
                    [x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top]
                    for x0, y0, x1, y1 in map(parse_box, self.options.boxes)
                ]
            )
        return torch.tensor(rows, dtype=torch.float32, device=device)

    def _slot_facts(self, result: BatchExplanation, b: int, geometry: CropGeometry) -> list[dict]:
        """What each real slot of image ``b`` says for its explanations: class, scores, target fields, notes."""
        facts = []
        logits, slots = result.logits, result.slots
        finite = bool(torch.isfinite(logits[b] if logits is not None else result.values[b]).all())
        for k in range(slots.counts[b]):
            c = int(result.classes[b, k])
            value = float(result.values[b, k])
            has_logit = logits is not None and logits.shape[1] > 1 and 0 <= c < logits.shape[1]
            fields = dict(slots.detail(b, k))
            notes = (fields.pop("warning"),) if "warning" in fields else ()
            facts.append(
                {
                    "class_index": c if c >= 0 else None,
                    "class_name": self.class_name(c) if c >= 0 else None,
                    "rank": k + 1,
                    "score": float(logits[b, c]) if has_logit else value,
                    "probability": float(result.probabilities[b, k]) if result.probabilities is not None else None,
                    "target": result.target,
                    "target_value": value,
                    "target_fields": self._on_photo(fields, geometry),
                    "slot": slots.name(b, k),
                    "mask": self._mask(slots, b, k, geometry),
                    "notes": notes if finite else ("model output is not finite (NaN/Inf); scores are null",) + notes,
                }
            )
        return facts

    def _on_photo(self, fields: dict, geometry: CropGeometry) -> dict:
        """A target's record fields with their class names, and a detection's box in the photo's pixels."""
        if "versus_index" in fields:
            fields["versus_name"] = self.class_name(fields["versus_index"])
        if "detection" in fields:
            found = dict(fields["detection"])
            (width, height), (rw, rh), (left, top, _, _) = (
                geometry.original_size,
                geometry.resized_size,
                geometry.crop_box,
            )
            x0, y0, x1, y1 = found["box"]
            found["box"] = [
                (x0 + left) * width / rw,
                (y0 + top) * height / rh,
                (x1 + left) * width / rw,
                (y1 + top) * height / rh,
            ]
            found["label_name"] = self.class_name(found["label"])
            fields["detection"] = found
        return fields

    def _mask(self, slots, b: int, k: int, geometry: CropGeometry) -> np.ndarray | None:
        """A segment's mask on the photo, for ``--save-raw``."""
        if not self.options.save_raw or "masks" not in slots.data:
            return None
        mask = slots.data["masks"][b, k].float()[None, None]
        return (place_on_original(mask, geometry)[0, 0] >= 0.5).cpu().numpy()

    def _explanation(
        self,
        key: tuple[str, str],
        raw: torch.Tensor,
        placed: np.ndarray,
        empty: bool,
        facts: dict,
        guided: tuple,
        found_layout: Layout | None = None,
    ) -> Explanation:
        """One (image, method, layer, slot) result: the placed map, its boxes, and what is wrong with it."""
        method, layer = key
        opts = self.options
        regions = regions_from_map(placed, opts.bbox_threshold)
        bbox = regions[0].box if regions else None
        grid = tuple(raw.shape[-2:])
        warnings = facts["notes"] + _warnings(raw, empty)
        if not (regions or empty):
            warnings += (no_box_reason(placed, opts.bbox_threshold, grid),)
        covers = bool(bbox) and box_share(bbox, placed.shape) >= WHOLE_PHOTO_SHARE
        if covers:
            warnings += (whole_photo_note(bbox, placed.shape),)
        return Explanation(
            **{k: v for k, v in facts.items() if k != "notes"},
            layer=layer,
            method=method,
            map=placed,
            empty=empty,
            bbox=bbox,
            regions=tuple(regions if opts.bbox_mode == "all" else regions[:1]),
            guided=guided[0],
            guided_raw=guided[1],
            grid=grid,
            **self._layout_fields(layer, found_layout),
            warnings=warnings,
            class_specific=METHODS[method].class_specific,
            view=self.view,
            box_covers_photo=covers,
        )

    def _layout_fields(self, layer: str, found: Layout | None = None) -> dict:
        """How the map's grid was read from the layer's output (or, ``found``, from the attention), for the record
        (a fused map's: that of the first of its layers with the most positions, whose grid it is on)."""
        layout = found or self.layouts.get(layer)
        if layout is None and layer not in (INPUT_LAYER, ATTENTION_LAYER, *self.layouts):
            layout = self._fused_layout(layer)
        return {
            "layout": layout.name if layout is not None else INPUT_LAYER,
            "prefix_tokens": layout.prefix if layout is not None else 0,
        }

    def _fused_layout(self, fused: str) -> Layout | None:
        infos = {info.path: info for info in getattr(self, "layer_infos", [])}
        parts = [p for p in fused.split("+") if p in self.layouts]
        if not parts:
            return None
        finest = max(parts, key=lambda p: _positions(infos.get(p)))
        return self.layouts[finest]

    @staticmethod
    def _guided_images(
        guided: torch.Tensor, scaled: torch.Tensor, crop_hw: tuple[int, int], geometry: CropGeometry, keep_raw: bool
    ) -> tuple[list, list]:
        """Guided backprop times the map upsampled to the crop, placed on the photo: the display images (scaled
        by what is shown, at the photo's resolution) and, with ``keep_raw``, the float values as (H, W, 3) arrays.
        One class at a time: the float image on the photo is the largest buffer of all."""
        cam_on_crop = upsample_to(scaled, crop_hw)  # (K, hc, wc)
        product = guided.float() * cam_on_crop[:, None]  # (K, 3, hc, wc)
        images, raw = [], []
        for one in product.split(1):
            placed = place_on_original(one, geometry)
            if keep_raw:  # as the maps: non-finite is no evidence
                finite = torch.nan_to_num(placed[0], nan=0.0, posinf=0.0, neginf=0.0)
                raw.append(finite.permute(1, 2, 0).contiguous().cpu().numpy())
            else:
                raw.append(None)
            images.append(guided_image(placed, consume=True)[0].cpu().numpy())
        return images, raw


def same_size_groups(tensors: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of the tensors that share one size, in order of first appearance (one batch each)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return list(groups.values())


def full_view_failure(loaded: LoadedModel, config: PreprocessConfig | None = None) -> str | None:
    """Why the model cannot take the full view (``None`` when it can), from one probe forward pass.

    The probe is the input the full view makes of a 4:3 photo: a model with a fixed-size head or
    position embedding fails on it or returns other logits. ``config``: the preprocessing to probe
    (default: the model's own).
    """
    config = config or loaded.preprocess
    geometry = full_geometry(4 * max(config.input_size) + 1, 3 * max(config.input_size), config)
    width, height = geometry.resized_size
    probe = torch.zeros(1, 3, height, width, device=model_device(loaded.model))
    try:
        with torch.inference_mode():
            logits = logits_of(loaded.model(probe))
    except Exception as err:  # each architecture fails in its own way; the cause goes into the message
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        size = f"{config.input_size[0]}x{config.input_size[1]}"
        return f"takes only its {size} input (a {height}x{width} probe failed: {first})"
    if tuple(logits.shape) != (1, loaded.num_classes):
        return f"returns logits of shape {tuple(logits.shape)} for a {height}x{width} input"
    return None


def _warnings(raw: torch.Tensor, empty: bool) -> tuple[str, ...]:
    """The numerical faults of one map, worded for the record."""
    found = []
    if not torch.isfinite(raw).all():
        found.append("map had non-finite values, treated as zero")
    if empty:
        found.append("map is empty: no positive evidence at this layer (zero gradient or constant activation)")
    return tuple(found)


def _positions(info: LayerInfo | None) -> int:
    """How many positions a traced layer's grid has (0 where it is not known)."""
    grid = getattr(getattr(info, "layout", None), "grid", None)
    return grid[0] * grid[1] if grid else 0
