"""An EXIF-rotated photo's heatmap and box line up with what the viewer sees."""

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.io.images import load_rgb

from helpers import BrightnessNet


def _brightness_explainer(outputs):
    from gradcam_cli import Explainer, ExplainOptions
    from gradcam_cli.maps.preprocess import PreprocessConfig
    from gradcam_cli.model.loading import LoadedModel

    loaded = LoadedModel(
        BrightnessNet().eval(),
        "timm/brightness",
        PreprocessConfig((224, 224), 256, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        2,
        None,
        "test",
    )
    return Explainer(loaded, ExplainOptions(outputs=outputs, classes=["0"], bbox_threshold=0.5))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photo_heatmap_and_box_line_up(tmp_path, orientation):
    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.explain import run_explain
    from gradcam_cli.options import JobOptions

    # Stored pixels: landscape 200x120, bright block at the top centre (x 80..120, y 10..40).
    stored = np.full((120, 200, 3), 20, dtype=np.uint8)
    stored[10:40, 80:120] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=97)
    # Displayed: portrait 120x200. Orientation 6 turns the top edge to the right, 8 to the left.
    if orientation == 6:
        x0, x1 = 120 - 40, 120 - 10
    else:
        x0, x1 = 10, 40
    y0, y1 = 80, 120
    photo = load_rgb(path)
    assert photo.shape == (200, 120, 3)
    explainer = _brightness_explainer(("heatmap", "overlay", "guided", "bbox"))
    [[e]] = explainer.explain_arrays([photo])
    assert e.map.shape == (200, 120)
    bx0, by0, bx1, by1 = e.bbox
    assert abs(bx0 - x0) <= 3 and abs(bx1 - x1) <= 3 and abs(by0 - y0) <= 3 and abs(by1 - y1) <= 3, e.bbox
    assert e.map[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4].mean() > 0.8 and e.map[150:].mean() < 0.05
    # Through a job: every output has the rotated size, and the heatmap is hot where the block is.
    recs = []
    out = tmp_path / "out"
    summary = run_explain(explainer, collect_inputs([str(path)]), out, JobOptions(workers=0), on_record=recs.append)
    assert summary.done == 1 and recs[0]["image_size"] == [120, 200] and recs[0]["bbox"] == list(e.bbox)
    for kind, file in recs[0]["files"].items():
        with Image.open(file) as img:
            assert img.size == (120, 200), kind
    heat = np.asarray(Image.open(recs[0]["files"]["heatmap"]).convert("RGB"), dtype=np.int16)
    hot = heat[(y0 + y1) // 2, (x0 + x1) // 2]
    cold = heat[180, 60]
    assert hot[0] > 100 and hot[2] < 50 and cold[2] > 100 and cold[0] < 50  # JET: red at 1, blue at 0
