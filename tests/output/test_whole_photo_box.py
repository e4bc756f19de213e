"""A box that is (nearly) the whole photo says nothing: it is flagged in the record, on the picture, and counted by
evaluate."""

from __future__ import annotations

import numpy as np

from gradcam_cli.explainer import Explainer
from gradcam_cli.maps.boxes import WHOLE_PHOTO_SHARE, box_share
from gradcam_cli.maps.preprocess import PreprocessConfig
from gradcam_cli.model.loading import LoadedModel
from gradcam_cli.options import ExplainOptions

from helpers import BrightnessNet


def _explainer(**options) -> Explainer:
    config = PreprocessConfig((48, 64), (48, 64), "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    loaded = LoadedModel(BrightnessNet().eval(), "test/Brightness", config, 2, ["a", "b"], "test")
    return Explainer(loaded, ExplainOptions(layers=("features",), classes=("0",), outputs=("bbox",), **options))


def test_a_box_over_the_whole_photo_is_flagged_and_a_small_one_is_not() -> None:
    bright = np.full((48, 64, 3), 230, np.uint8)
    bright[:3, :3] = 0  # the map's minimum: everything else is near its maximum
    spot = np.full((48, 64, 3), 10, np.uint8)
    spot[10:20, 30:40] = 250
    [[whole]], [[small]] = _explainer().explain_arrays([bright]), _explainer().explain_arrays([spot])
    assert box_share(whole.bbox, whole.map.shape) >= WHOLE_PHOTO_SHARE and whole.box_covers_photo
    assert any("the box covers 100% of the photo" in w for w in whole.warnings), whole.warnings
    assert not small.box_covers_photo and not any("covers" in w for w in small.warnings)


def test_the_flag_reaches_the_record_and_the_picture(tmp_path) -> None:
    from PIL import Image

    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.explain import run_explain
    from gradcam_cli.options import JobOptions
    from gradcam_cli.output.write import boxed

    bright = np.full((48, 64, 3), 230, np.uint8)
    bright[:3, :3] = 0
    Image.fromarray(bright).save(tmp_path / "bright.png")
    explainer = _explainer()
    found = []
    run_explain(
        explainer,
        collect_inputs([str(tmp_path / "bright.png")]),
        tmp_path / "out",
        JobOptions(workers=0),
        on_record=found.append,
    )
    assert found[0]["box_covers_photo"] is True and found[0]["bbox"] == [0, 0, 64, 48]
    [[e]] = explainer.explain_arrays([bright])
    unflagged = boxed(bright, type("E", (), {**vars(e), "box_covers_photo": False})(), False)
    assert not np.array_equal(boxed(bright, e, False), unflagged)  # the label on the picture says so
