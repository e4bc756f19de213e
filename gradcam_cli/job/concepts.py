"""``gradcam concepts``: Deep Feature Factorization of one layer over a set of photos (``concepts.py``), written
as a sheet per photo, each concept's maps per photo (``.npy``) and ``concepts.json``.

All the photos are factorised together, so they share the concepts: each photo is read in the model's crop
view (its input size), so that every photo gives the layer the same grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..concepts import concept_logits, factorize, layer_activations, scaled_maps, votes
from ..errors import ImageError, UsageError
from ..explainer import Explainer
from ..io.images import load_rgb
from ..io.inputs import collect_inputs
from ..maps.preprocess import to_model_input
from ..options import ExplainOptions, ModelOptions
from ..output.concept_sheet import concept_colours, concept_sheet
from ..output.encode import encode_npy, encode_png
from ..output.files import write_bytes_atomic

CHUNK = 16  # photos per forward pass


@dataclass
class ConceptRequest:
    concepts: int = 5
    top: int = 2  # classes shown per concept
    layer: str | None = None
    convention: str = "pytorch-grad-cam"
    seed: int = 0


@dataclass
class ConceptRun:
    records: list[dict] = field(default_factory=list)  # one per photo
    concepts: list[dict] = field(default_factory=list)  # one per concept: colour and votes
    failed: list[str] = field(default_factory=list)  # messages for the photos that could not be read


def _photos(inputs: list[str], output_dir: Path, run: ConceptRun) -> list[tuple[str, str, np.ndarray]]:
    """(input, output stem, RGB) of every readable photo; the others are noted in ``run.failed``."""
    photos = []
    for item in collect_inputs(inputs, output_dir=output_dir):
        try:
            if item.error:
                raise ImageError(item.error)
            photos.append((item.path, str(item.out_subdir / item.stem), load_rgb(item.path)))
        except ImageError as err:
            run.failed.append(f"{item.path}: {err}")
    return photos


def _model_view(rgb: np.ndarray, config) -> tuple[torch.Tensor, np.ndarray]:
    """The model input of a photo, and the photo as the model sees it (resized and cropped), in RGB."""
    from PIL import Image

    x, geometry = to_model_input(rgb, config, "crop")
    left, top, cw, ch = geometry.crop_box
    shown = Image.fromarray(rgb).resize(geometry.resized_size).crop((left, top, left + cw, top + ch))
    return x, np.asarray(shown)


def run_concepts(inputs: list[str], output_dir: str, model: ModelOptions, request: ConceptRequest) -> ConceptRun:
    """Factorise the layer's activations over the photos ``inputs`` names and write what was found."""
    if request.concepts < 1 or request.top < 1:
        raise UsageError("--concepts and --top: must be 1 or more")
    out, run = Path(output_dir), ConceptRun()
    explainer = Explainer.from_options(model, ExplainOptions(layers=[request.layer] if request.layer else []))
    (path, layer), loaded = next(iter(explainer.layers.items())), explainer.loaded
    photos = _photos(inputs, out, run)
    if not photos:
        raise UsageError("no photo to factorise")
    views = [_model_view(rgb, loaded.preprocess) for _, _, rgb in photos]
    device = next(loaded.model.parameters()).device
    batches = [torch.stack([x for x, _ in views[i : i + CHUNK]]).to(device) for i in range(0, len(views), CHUNK)]
    acts = np.concatenate([layer_activations(loaded.model, layer, b) for b in batches])
    if request.concepts > acts.shape[1]:
        raise UsageError(f"--concepts {request.concepts}: the layer {path} has only {acts.shape[1]} channels")
    found = factorize(acts, request.concepts, request.convention, request.seed)
    chosen = votes(concept_logits(loaded.model, layer, batches[0], found.concepts), request.top)
    colours = concept_colours(request.concepts)
    run.concepts = _concept_rows(chosen, colours, loaded.labels)
    legend = [
        f"{i + 1}: " + ", ".join(f"{v['class_name']} {v['probability']:.2f}" for v in c["votes"])
        for i, c in enumerate(run.concepts)
    ]
    for (source, stem, _), (_, shown), maps in zip(photos, views, found.maps):
        run.records.append(_write_photo(out, source, stem, shown, maps, colours, legend))
    summary = {
        "model": loaded.name,
        "layer": path,
        "convention": request.convention,
        "seed": request.seed,
        "concepts": run.concepts,
        "photos": run.records,
    }
    write_bytes_atomic(out / "concepts.json", json.dumps(summary, indent=1).encode())
    return run


def _concept_rows(chosen, colours: np.ndarray, labels: list[str] | None) -> list[dict]:
    return [
        {
            "concept": i + 1,
            "colour": "#{:02x}{:02x}{:02x}".format(*map(int, colours[i])),
            "votes": [
                {"class_index": c, "class_name": labels[c] if labels else str(c), "probability": p}
                for c, p in zip(classes, probabilities)
            ],
        }
        for i, (classes, probabilities) in enumerate(zip(chosen.classes, chosen.probabilities))
    ]


def _write_photo(out: Path, source: str, stem: str, shown: np.ndarray, maps: np.ndarray, colours, legend) -> dict:
    """One photo's sheet and maps; its record: the files and each concept's share of the photo's total."""
    scaled = scaled_maps(maps, shown.shape[:2])
    sheet, arrays = out / f"{stem}_concepts.png", out / f"{stem}_concepts.npy"
    sheet.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(sheet, encode_png(concept_sheet(shown, scaled, colours, legend), photographic=True))
    write_bytes_atomic(arrays, encode_npy(scaled.astype(np.float32)))
    total = maps.sum()
    shares = (maps.sum(axis=(1, 2)) / total).tolist() if total > 0 else [0.0] * len(maps)
    return {"input": source, "files": {"sheet": str(sheet), "maps": str(arrays)}, "shares": shares}
