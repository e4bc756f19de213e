"""``gradcam concepts`` (Deep Feature Factorization) against pytorch-grad-cam 1.5.7 (``dff``,
``DeepFeatureFactorization``), on the bundled Lite0 with its real weights and the sample photos.

The factorisation is scikit-learn's NMF on both sides: given the same float64 activations, the same seed and
parameters, the concepts and maps are the same up to float64 rounding (1e-9 relative is far above it, and far
below what another seed or convention changes). The votes go through the float32 classifier on both sides:
bounded by float32's error for the global pool's mean and the classifier's dot product (``gamma32``).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("sklearn")

from pytorch_grad_cam import DeepFeatureFactorization  # noqa: E402
from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff  # noqa: E402

from gradcam_cli.concepts import concept_logits, factorize, layer_activations  # noqa: E402
from gradcam_cli.maps.preprocess import to_model_input  # noqa: E402

from helpers import SAMPLES, gamma32, max_diff, oracle_model, run, scaled  # noqa: E402

PHOTOS = ("cat_and_dog.png", "dogs.png")
REL = 1e-9


@functools.cache
def lite0():
    from gradcam_cli import load_model

    return load_model()  # as the command loads it


@functools.cache
def batch() -> torch.Tensor:
    from gradcam_cli.io.images import load_rgb

    config = lite0().preprocess
    return torch.stack([to_model_input(load_rgb(SAMPLES / p), config, "crop")[0] for p in PHOTOS])


@functools.cache
def activations(path: str) -> np.ndarray:
    m = oracle_model("lite0")
    return layer_activations(m, m.get_submodule(path), batch())


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("path", ["bn2", "blocks.5"])  # after a ReLU6; a linear bottleneck (signed values)
def test_factorization_matches_pytorch_grad_cams_dff(path: str) -> None:
    acts = activations(path)
    mine = factorize(acts, 4)
    concepts, maps = dff(acts.copy(), n_components=4)
    assert relative(mine.concepts, concepts) <= REL and relative(mine.maps, maps) <= REL
    other_seed = factorize(acts, 4, seed=1)
    assert relative(other_seed.maps, maps) > 1e-3  # the seed reaches the factorisation


def test_paper_convention_clips_instead_of_shifting() -> None:
    """After a ReLU6 every channel's minimum over the photos is 0: both conventions are the same there; on a
    linear bottleneck they differ."""
    relu = activations("bn2")
    assert relu.min() == 0.0 and (relu.reshape(relu.shape[0], relu.shape[1], -1).min(axis=(0, 2)) == 0).all()
    assert relative(factorize(relu, 3, "paper").maps, factorize(relu, 3).maps) <= REL
    signed = activations("blocks.5")
    assert signed.min() < 0
    assert relative(factorize(signed, 3, "paper").maps, factorize(signed, 3).maps) > 1e-3


def test_concept_votes_are_the_classifier_on_each_concept() -> None:
    """pytorch-grad-cam feeds the concepts (as float32) to the classifier; here the network runs with the layer
    replaced by each concept at every position, through its global pool: the same up to float32 rounding."""
    m = oracle_model("lite0")
    found = factorize(activations("bn2"), 4)
    mine = concept_logits(m, m.bn2, batch(), found.concepts)
    c32 = torch.from_numpy(np.float32(found.concepts.T)).double()  # (K, C) as both sides see them
    w, b = m.classifier.weight.double(), m.classifier.bias.double()
    exact = c32 @ w.T + b
    bound = gamma32(c32.shape[1] + 49 + 1) * (c32.abs() @ w.abs().T + b.abs())  # a 7 x 7 mean, then the dot
    assert ((mine - exact).abs() <= bound).all()
    cam = DeepFeatureFactorization(model=m, target_layer=m.bn2, computation_on_concepts=m.classifier)
    try:
        _, _, theirs = cam(batch(), n_components=4)
    finally:
        cam.activations_and_grads.release()
    assert (torch.from_numpy(theirs).double() - exact).abs().le(bound).all()


def test_concepts_command_writes_a_sheet_per_photo_and_the_votes(tmp_path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        (photos / name).write_bytes((SAMPLES / name).read_bytes())
    result = run("concepts", photos, "-o", tmp_path / "out", "-k", "3", "--top", "2", "--layer", "bn2", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    summary = json.loads((tmp_path / "out" / "concepts.json").read_text())
    assert summary["layer"] == "bn2" and len(summary["concepts"]) == 3 and len(records) == 2
    assert all(
        len(c["votes"]) == 2 and c["votes"][0]["probability"] >= c["votes"][1]["probability"]
        for c in summary["concepts"]
    )
    # pytorch-grad-cam's maps for these photos: its dff on the same activations, each map scaled to [0, 1]
    m = lite0().model  # the model as the command loads it (its BatchNorms folded): the same activations
    _, maps = dff(layer_activations(m, m.bn2, batch()), n_components=3)
    for i, record in enumerate(records):
        assert abs(sum(record["shares"]) - 1) <= 1e-9
        sheet = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(record["files"]["sheet"]))
        assert sheet.shape[1] == 2 * 224 + 8 and sheet.shape[0] > 224
        mine = torch.from_numpy(np.load(record["files"]["maps"]))
        assert mine.shape == (3, 224, 224)
        up = torch.nn.functional.interpolate(torch.from_numpy(maps[i])[None], size=(224, 224), mode="bilinear")[0]
        assert max_diff(mine, scaled(up)) <= 1e-6  # stored as float32: 2**-24 of [0, 1], twice


@pytest.mark.parametrize(
    "args,message",
    [(("-k", "0"), "must be 1 or more"), (("-k", "2000", "--layer", "blocks.2"), "has only 40 channels")],
)
def test_concepts_command_refuses_impossible_counts_in_one_line(tmp_path, args, message) -> None:
    result = run("concepts", SAMPLES / "cat.png", "-o", tmp_path, *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
