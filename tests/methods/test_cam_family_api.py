"""The Python API takes every new member of the CAM family with a user's own ``nn.Module``: one map per method
(fused for RefineCAM, on the input for FullGrad), records that validate against the schema, and the
model left as it was."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")

from gradcam_cli import explain  # noqa: E402
from gradcam_cli.options import ExplainOptions  # noqa: E402

from helpers import SCHEMA  # noqa: E402

NEW = ("fullgrad", "kpcacam", "shapleycam", "finercam", "fem", "refinecam", "sscam", "iscam", "smoothgradcampp")


def test_explain_takes_every_new_method_with_a_users_module() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    options = ExplainOptions(methods=NEW, layers=("layer2", "layer3"), noise_samples=2, iscam_steps=2)
    (result,) = explain(model, [image], options=options)
    expected = {(m, p) for m in NEW for p in ("layer2", "layer3") if m not in ("fullgrad", "refinecam")}
    expected |= {("fullgrad", "input"), ("refinecam", "layer2+layer3")}
    assert set(result.maps) == expected
    for key, maps in result.maps.items():
        assert maps.shape == (1, 64, 64) and np.isfinite(maps).all() and maps.max() > 0, key
    for record in result.records:
        jsonschema.validate({**record, "files": {}}, SCHEMA)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def test_a_fused_map_sits_in_its_rows_first_cell_on_a_sheet() -> None:
    """Like occlusion's map on the input, RefineCAM's fused map gets no column of its own beside the layers."""
    from types import SimpleNamespace

    from gradcam_cli.output.sheet import found_cells, sheet_columns

    order = ["input", "layer2", "layer3"]
    made = [SimpleNamespace(method="gradcampp", layer=p, layout="conv", class_index=0) for p in ("layer2", "layer3")]
    made.append(SimpleNamespace(method="refinecam", layer="layer2+layer3", layout="conv", class_index=0))
    columns = sheet_columns(made, order)
    assert columns == ["layer2", "layer3"]
    assert found_cells(made, columns)["c0", "refinecam", "layer2"].layer == "layer2+layer3"
    assert sheet_columns(made[2:], order) == ["layer2+layer3"]  # alone, it has its column
