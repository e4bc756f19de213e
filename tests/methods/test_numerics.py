"""Numerical faults: NaN/Inf outputs, zero gradients, constant activations give valid records and images."""

import json

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gradcam_cli import Explainer, ExplainOptions
from gradcam_cli.io.inputs import collect_inputs
from gradcam_cli.job.explain import run_explain
from gradcam_cli.maps.preprocess import PreprocessConfig
from gradcam_cli.model.loading import LoadedModel
from gradcam_cli.options import JobOptions

from helpers import SAMPLES, SCHEMA


class TinyNet(nn.Module):
    def __init__(self, fault: str):
        super().__init__()
        self.fault = fault
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 5)
        if fault == "zero_grad":
            nn.init.zeros_(self.fc.weight)
        if fault == "constant":
            nn.init.zeros_(self.features[0].weight)
            nn.init.constant_(self.features[0].bias, 1.0)

    def forward(self, x):
        a = self.features(x)
        logits = self.fc(a.mean(dim=(2, 3)))
        if self.fault == "nan":
            logits = logits * torch.tensor(float("nan"))
        if self.fault == "inf":
            logits = logits + torch.tensor(float("inf"))
        return logits


def loaded(fault: str) -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(TinyNet(fault).eval(), f"timm/tiny-{fault}", PreprocessConfig((64, 64), 72), 5, None, "test")


@pytest.mark.parametrize("fault", ["nan", "inf", "zero_grad", "constant"])
def test_faulty_models_give_valid_records_and_images(tmp_path, fault):
    explainer = Explainer(loaded(fault), ExplainOptions(save_raw=True))
    records = []
    summary = run_explain(
        explainer,
        collect_inputs([str(SAMPLES / "samoyed.png")]),
        tmp_path,
        JobOptions(workers=0),
        on_record=records.append,
    )
    assert summary.failed == 0 and summary.done == 1
    [rec] = records
    jsonschema.validate(rec, SCHEMA)
    json.dumps(rec, allow_nan=False)
    if fault != "inf":  # +inf on every logit leaves the gradients, and so the map, intact
        assert rec["map_empty"] is True and rec["bbox"] is None
        assert any("empty" in w for w in rec["warnings"])
    if fault in ("nan", "inf"):
        assert rec["probability"] is None and any("not finite" in w for w in rec["warnings"])
    for kind, path in rec["files"].items():
        if kind == "raw":
            raw = np.load(path)
            assert np.isfinite(raw).all() and 0 <= raw.min() and raw.max() <= 1
            assert fault == "inf" or raw.max() == 0
            continue
        if kind == "guided_raw":  # the guided gradient x map, as float32 (H, W, 3)
            assert np.load(path).shape == (128, 128, 3) and np.isfinite(np.load(path)).all()
            continue
        with Image.open(path) as img:
            arr = np.asarray(img)
        assert arr.shape[:2] == (128, 128)
    # The results manifest is valid JSON lines.
    for line in (tmp_path / "results.jsonl").read_text().splitlines():
        json.loads(line)


def test_healthy_model_has_no_warnings(tmp_path):
    explainer = Explainer(loaded("none"), ExplainOptions(outputs=("heatmap",)))
    [exps] = explainer.explain_arrays([np.asarray(Image.open(SAMPLES / "samoyed.png").convert("RGB"))])
    assert exps[0].warnings == () and not exps[0].empty
