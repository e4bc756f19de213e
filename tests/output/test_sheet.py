"""Sheets: the grid's geometry (cell order, titles, sizes) as golden values, and each cell's pixels."""

import json

import cv2
import jsonschema
import numpy as np
import pytest
from PIL import Image

from gradcam_cli.cli import app
from gradcam_cli.explainer import Explanation
from gradcam_cli.output import sheet
from gradcam_cli.output.render import colormap_lut

from helpers import ROOT, runner

ALPHA = 0.5
# Published end colours of the maps (matplotlib's viridis; OpenCV's JET runs dark blue -> dark red).
VIRIDIS_0, VIRIDIS_1 = (68, 1, 84), (253, 231, 37)
JET_0, JET_1 = (0, 0, 128), (128, 0, 0)


def _explanation(method, layer, map01, guided=None, empty=False):
    return Explanation(
        class_index=285,
        class_name="Egyptian cat",
        probability=0.517,
        score=8.4,
        layer=layer,
        method=method,
        map=map01.astype(np.float32),
        empty=empty,
        bbox=None,
        guided=guided,
    )


@pytest.fixture(scope="module")
def synthetic():
    """A 300x200 photo; gradcam (with guided images) and layercam at three layers, each map a different
    constant level except gradcam@layer2, a left-to-right ramp. Given out of model order on purpose."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))
    levels = {
        ("gradcam", "layer1"): 0.12,
        ("gradcam", "layer3"): 0.92,
        ("layercam", "layer1"): 0.32,
        ("layercam", "layer2"): 0.52,
        ("layercam", "layer3"): 0.72,
    }  # none on a colour step
    exps = []
    for layer in ("layer3", "layer1", "layer2"):
        for method in ("gradcam", "layercam"):
            level = levels.get((method, layer))
            m = ramp if level is None else np.full((200, 300), level, np.float32)
            guided = np.full((200, 300, 3), 40 + 60 * int(layer[-1]), np.uint8) if method == "gradcam" else None
            exps.append(_explanation(method, layer, m, guided))
    return photo, exps, levels, ramp


ORDER = ["input", "layer1", "layer2", "layer3", "layer4"]


def test_sheet_geometry_golden(synthetic):
    photo, exps, _, _ = synthetic
    layout = sheet.sheet_layout((300, 200), exps, ORDER, caption=True, colorbar=True)
    # Golden values: 256-px cells (300x200 -> 256x171), 8-px gaps, 20-px title bands, 10-px margins,
    # a 20-px caption line and its margin, a colour bar (4 gap + 11 bar + 3 tick + 1 + 24 labels + 4).
    assert layout.size == (10 + (4 * 264 - 8) + 47 + 10, 40 + (3 * 199 - 8) + 10) == (1115, 639)
    assert [(c.row, c.col) for c in layout.cells] == [(r, c) for r in range(3) for c in range(4)]
    titles = [c.title for c in layout.cells]
    assert titles == [
        "photo",
        "layer1 · gradcam",
        "layer2 · gradcam",
        "layer3 · gradcam",
        "",
        "layer1 · guided gradcam",
        "layer2 · guided gradcam",
        "layer3 · guided gradcam",
        "",
        "layer1 · layercam",
        "layer2 · layercam",
        "layer3 · layercam",
    ]
    assert [c.kind for c in layout.cells] == [
        "photo",
        "overlay",
        "overlay",
        "overlay",
        "blank",
        "guided",
        "guided",
        "guided",
        "blank",
        "overlay",
        "overlay",
        "overlay",
    ]
    for c in layout.cells:
        assert (c.image.w, c.image.h) == (256, 171)
        assert (c.image.x, c.image.y) == (10 + 264 * c.col, 40 + 199 * c.row + 20)
        assert (c.title_box.x, c.title_box.y, c.title_box.h) == (c.image.x, c.image.y - 20, 20)
    assert layout.bar is not None and (layout.bar.x, layout.bar.y, layout.bar.w, layout.bar.h) == (1062, 60, 11, 569)
    bare = sheet.sheet_layout((300, 200), exps, ORDER, caption=False, colorbar=False)
    assert bare.size == (10 + 1048 + 10, 10 + 589 + 10) and bare.caption is None and bare.bar is None


def test_sheet_cells_hold_the_right_pictures(synthetic):
    photo, exps, levels, ramp = synthetic
    out = sheet.render_sheet(
        photo,
        exps,
        ORDER,
        caption="cat.png · Egyptian cat (285) · p = 0.517",
        colormap="viridis",
        colorbar=True,
        alpha=ALPHA,
    )
    layout = sheet.sheet_layout((300, 200), exps, ORDER, caption=True, colorbar=True)
    assert out.shape == (layout.size[1], layout.size[0], 3)
    small = cv2.resize(photo, (256, 171), interpolation=cv2.INTER_AREA)
    lut = colormap_lut("viridis")
    cells = {(c.row, c.col): c for c in layout.cells}

    def crop(rect):
        return out[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w].astype(int)

    assert np.array_equal(crop(cells[0, 0].image), small)  # the photo, first
    for (method, layer), level in levels.items():
        row = 0 if method == "gradcam" else 2
        index = int(np.float32(level) * np.float32(255) + np.float32(0.5))  # the map is float32
        expected = ALPHA * lut[index] + (1 - ALPHA) * small
        assert np.abs(crop(cells[row, int(layer[-1])].image) - expected).max() <= 1, (method, layer)
    ramp_cell = crop(cells[0, 2].image)  # gradcam@layer2: the ramp runs left (0) to right (1)
    heat = lut[np.clip(cv2.resize(ramp, (256, 171), interpolation=cv2.INTER_AREA) * 255 + 0.5, 0, 255).astype(int)]
    assert np.abs(ramp_cell - (ALPHA * heat + (1 - ALPHA) * small)).max() <= 1
    for col in (1, 2, 3):  # guided row: each layer's guided image (a level per layer)
        assert np.all(crop(cells[1, col].image) == 40 + 60 * col)
    for key in ((1, 0), (2, 0)):  # blank cells and their bands stay background
        assert np.all(crop(cells[key].image) == 255) and np.all(crop(cells[key].title_box) == 255)
    for c in layout.cells:  # every title is drawn: dark pixels in its band
        if c.title:
            assert (crop(c.title_box).sum(axis=2) < 300).sum() > 20, c.title
    assert (crop(layout.caption).sum(axis=2) < 300).sum() > 50
    bar = layout.bar
    assert tuple(out[bar.y, bar.x + bar.w // 2]) == VIRIDIS_1  # top: the colour of 1
    assert tuple(out[bar.y + bar.h - 1, bar.x + bar.w // 2]) == VIRIDIS_0  # bottom: the colour of 0


def test_long_titles_fit_their_cell():
    photo_size = (120, 400)  # a tall photo: narrow cells (77 px)
    layer = "blocks.5.3.conv_pwl.very_long_module_name"
    exps = [_explanation("gradcam", layer, np.zeros((400, 120)))]
    layout = sheet.sheet_layout(photo_size, exps, [layer], caption=False, colorbar=False)
    cell = layout.cells[1]
    from gradcam_cli.output.fonts import text_width

    assert cell.image.w == 77 and "…" in cell.title
    assert text_width(cell.title, sheet.TITLE_PX) <= cell.image.w
    assert cell.title.startswith("bl") and cell.title.endswith("cam")  # both ends kept


@pytest.fixture(scope="module")
def resnet_sheet(tmp_path_factory, samples):
    out = tmp_path_factory.mktemp("sheet")
    result = runner.invoke(
        app,
        [
            str(a)
            for a in (
                "explain",
                samples / "cat.png",
                "--model",
                "resnet18",
                "--no-pretrained",
                "--layer",
                "layer3",
                "--layer",
                "layer1",
                "--method",
                "gradcam",
                "--method",
                "layercam",
                "--outputs",
                "overlay",
                "--save-raw",
                "--sheet",
                "--colormap",
                "jet",
                "-o",
                out,
                "--json",
            )
        ],
    )
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    schema = json.loads((ROOT / "gradcam_cli" / "record.schema.json").read_text())
    for rec in recs:
        jsonschema.validate(rec, schema)
    return recs


def test_cli_sheet_puts_layers_in_model_order_and_methods_in_rows(resnet_sheet, samples):
    recs = resnet_sheet
    sheets = {r["files"]["sheet"] for r in recs}
    assert len(sheets) == 1 and all(r["files"]["sheet"].endswith(f"cat_sheet_c{r['class_index']}.png") for r in recs)
    picture = np.asarray(Image.open(sheets.pop()).convert("RGB"))
    photo = np.asarray(Image.open(samples / "cat.png").convert("RGB"))  # 512x341
    exps = [_explanation(r["method"], r["layer"], np.load(r["files"]["raw"])) for r in recs]
    order = ["input", "layer1", "layer2", "layer3", "layer4"]
    layout = sheet.sheet_layout((512, 341), exps, order, caption=True, colorbar=True)
    assert picture.shape == (layout.size[1], layout.size[0], 3)
    assert [c.title for c in layout.cells] == [
        "photo",
        "layer1 · gradcam",
        "layer3 · gradcam",
        "",
        "layer1 · layercam",
        "layer3 · layercam",
    ]
    assert {(c.image.w, c.image.h) for c in layout.cells} == {(256, 170)}  # 512x341 -> 256x170.5, rounded to even
    small = cv2.resize(photo, (256, 170), interpolation=cv2.INTER_AREA)
    jet = cv2.applyColorMap  # the cell, recomputed from the raw map with OpenCV directly
    for cell in layout.cells[1:]:
        if not cell.title:
            continue
        layer, method = cell.title.split(" · ")
        [rec] = [r for r in recs if r["layer"] == layer and r["method"] == method]
        m = cv2.resize(np.load(rec["files"]["raw"]), (256, 170), interpolation=cv2.INTER_AREA)
        heat = jet(np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        expected = ALPHA * heat.astype(int) + (1 - ALPHA) * small
        r = cell.image
        got = picture[r.y : r.y + r.h, r.x : r.x + r.w].astype(int)
        assert np.abs(got - expected).max() <= 1, cell.title
    bar = layout.bar
    assert tuple(picture[bar.y, bar.x + 2]) == JET_1 and tuple(picture[bar.y + bar.h - 1, bar.x + 2]) == JET_0


def test_sheet_counts_for_skip_existing_and_refuses_to_overwrite(samples, tmp_path):
    args = (
        "explain",
        samples / "samoyed.png",
        "--model",
        "resnet18",
        "--no-pretrained",
        "--class",
        "3",
        "--outputs",
        "heatmap",
        "--sheet",
        "-o",
        tmp_path,
    )
    assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    [sheet_file] = list(tmp_path.glob("samoyed_sheet_c*.png"))
    again = runner.invoke(app, [str(a) for a in args])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    skipped = runner.invoke(app, [str(a) for a in (*args, "--skip-existing")])
    assert skipped.exit_code == 0 and "1 skipped" in skipped.stderr
    sheet_file.unlink()  # a missing sheet means the image is not done
    redo = runner.invoke(app, [str(a) for a in (*args, "--skip-existing")])
    assert "0 skipped" in redo.stderr
    assert runner.invoke(app, [str(a) for a in (*args, "--overwrite")]).exit_code == 0 and sheet_file.exists()


def test_top_k_sheets_count_for_skip_existing(samples, tmp_path):
    args = ("explain", samples / "samoyed.png", "--top-k", "2", "--outputs", "heatmap", "--sheet", "-o", tmp_path)
    assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    sheets = sorted(tmp_path.glob("samoyed_sheet_c*.png"))
    assert len(sheets) == 2  # one per class
    assert "1 skipped" in runner.invoke(app, [str(a) for a in (*args, "--skip-existing")]).stderr
    sheets[0].unlink()
    assert "0 skipped" in runner.invoke(app, [str(a) for a in (*args, "--skip-existing")]).stderr
