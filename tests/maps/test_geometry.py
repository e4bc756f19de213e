"""Preprocessing equals the model's own transform, and maps land on the right photo pixels."""

import numpy as np
import pytest
import torch
from PIL import Image

from gradcam_cli import Explainer, ExplainOptions
from gradcam_cli.maps.placement import place_on_original
from gradcam_cli.maps.preprocess import PreprocessConfig, geometry_for, to_model_input
from gradcam_cli.model.loading import LoadedModel

from helpers import U32, BrightnessNet


@pytest.mark.parametrize("size", [(640, 480), (333, 500), (224, 224), (100, 57)])
def test_preprocessing_matches_timm_transform(size):
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    cfg = resolve_data_config({}, model=model)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    expected = create_transform(**cfg)(Image.fromarray(photo))
    ours, _ = to_model_input(photo, PreprocessConfig.from_timm(cfg))
    assert ours.shape == expected.shape
    # float32, bounded by its rounding: both resize with PIL (the same 8-bit pixels p) and compute
    # (p / 255 - mean) / std in float32 with the same float32 constants, 3 roundings: each side is off by at most
    # U32 (|p / 255| + |p / 255 - mean|) / std + U32 |result| <= U32 (2 / std + |result|). A wrong crop, resize or
    # normalisation moves pixels by 1e-2 and more.
    bound = 2 * U32 * (2 / min(cfg["std"]) + expected.abs().max().item())
    assert torch.allclose(ours, expected, rtol=0, atol=bound)


def test_preprocessing_matches_torchvision_transform():
    from torchvision.models import ResNet50_Weights

    from gradcam_cli.model.loading import _build_torchvision

    _, config, _ = _build_torchvision("resnet50", False, None)
    photo = np.random.default_rng(1).integers(0, 256, size=(300, 451, 3), dtype=np.uint8)
    expected = ResNet50_Weights.DEFAULT.transforms()(torch.from_numpy(photo).permute(2, 0, 1))
    ours, _ = to_model_input(photo, config)
    # torchvision resizes the tensor with antialiasing, we resize with PIL: equal up to rounding.
    assert ours.shape == expected.shape
    assert (ours - expected).abs().mean() < 0.02


def test_crop_box_maps_back_to_centre():
    g = geometry_for(640, 480, PreprocessConfig((224, 224), 256))
    assert g.resized_size == (341, 256)
    x0, y0, x1, y1 = g.crop_box_in_original()
    assert y0 == pytest.approx(16 * 480 / 256) and y1 == pytest.approx(240 * 480 / 256)
    assert (x0 + x1) / 2 == pytest.approx(320, abs=2)


def test_placed_map_follows_crop_and_zeroes_the_cut_away_border():
    config = PreprocessConfig((224, 224), 256)
    g = geometry_for(640, 480, config)
    crop_map = torch.zeros(1, 1, 224, 224)
    crop_map[..., 100:124, 50:74] = 1.0  # a square in crop pixels
    placed = place_on_original(crop_map, g)[0, 0].numpy()
    assert placed.shape == (480, 640)
    ys, xs = np.nonzero(placed > 0.5)
    sx = 640 / 341  # crop pixel -> original pixel
    left = 58  # torchvision CenterCrop: int(round((341 - 224) / 2)) rounds 58.5 half to even
    assert xs.min() == pytest.approx((left + 50) * sx, abs=2)
    assert xs.max() == pytest.approx((left + 74) * sx, abs=2)
    assert ys.min() == pytest.approx((16 + 100) * 480 / 256, abs=2)
    # Rows the center crop removed carry no evidence.
    assert placed[: int(16 * 480 / 256) - 1].max() == 0
    assert placed[int(240 * 480 / 256) + 1 :].max() == 0


def test_end_to_end_map_lines_up_with_the_photo():
    model = BrightnessNet().eval()
    loaded = LoadedModel(
        model,
        "timm/brightness",
        PreprocessConfig((224, 224), 256, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        2,
        None,
        "test",
    )
    photo = np.zeros((480, 640, 3), dtype=np.uint8)
    photo[200:300, 250:420] = 255  # a bright rectangle inside the crop
    [exps] = Explainer(loaded, ExplainOptions(outputs=(), classes=["0"], bbox_threshold=0.5)).explain_arrays([photo])
    e = exps[0]
    assert e.map.shape == (480, 640)
    x0, y0, x1, y1 = e.bbox
    assert abs(x0 - 250) <= 3 and abs(x1 - 420) <= 3 and abs(y0 - 200) <= 3 and abs(y1 - 300) <= 3
    inside = e.map[210:290, 260:410].mean()
    outside = e.map[:150].mean()
    assert inside > 0.9 and outside < 0.05
