"""Labelled pictures: caption and colour bar (golden geometry, the right colours at both ends), colour
maps, a font that scales, guided images normalised for display, and every box with --bbox-mode all."""

import json

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from gradcam_cli.cli import app
from gradcam_cli.explainer import Explanation
from gradcam_cli.maps.boxes import Region
from gradcam_cli.output import fonts, labels
from gradcam_cli.output.render import BOX_COLOURS, colorize, colormap_lut, guided_image
from gradcam_cli.output.write import Look, encode_outputs

from helpers import ROOT, runner

# Published end colours (matplotlib's tables for the perceptual maps; OpenCV's JET).
ENDS = {
    "jet": ((0, 0, 128), (128, 0, 0)),
    "viridis": ((68, 1, 84), (253, 231, 37)),
    "inferno": ((0, 0, 4), (252, 255, 164)),
    "turbo": ((48, 18, 59), (122, 4, 3)),
}


def dark_rows(patch: np.ndarray) -> np.ndarray:
    """Rows of a white-background patch holding text (dark pixels)."""
    return np.flatnonzero((patch.sum(axis=2) < 200).any(axis=1))


@pytest.mark.parametrize("name", sorted(ENDS))
def test_colormap_ends_are_the_published_colours(name):
    lut = colormap_lut(name)
    assert tuple(lut[0]) == ENDS[name][0] and tuple(lut[255]) == ENDS[name][1]
    ramp = colorize(np.array([[0.0, 1.0]], np.float32), name)
    assert tuple(ramp[0, 0]) == ENDS[name][0] and tuple(ramp[0, 1]) == ENDS[name][1]


def test_caption_and_colorbar_golden_224():
    image = np.full((224, 224, 3), 90, np.uint8)
    out = labels.labelled(image, "Egyptian cat 0.52 · gradcam · layer4", "viridis")
    layout = labels.label_layout(224, 224, "x", True)
    # Golden: 11-px text (3% of 224 is below the readable minimum), 3-px padding, a 14-px caption line;
    # the bar: 3 gap + 10 bar + 2 tick + 1 + 22 labels + 3.
    assert layout.text_px == 11 and layout.pad == 3
    assert out.shape == (20 + 224, 224 + 41, 3) and layout.size == (265, 244)
    assert (layout.image.x, layout.image.y) == (0, 20)
    assert (layout.bar.x, layout.bar.y, layout.bar.w, layout.bar.h) == (227, 27, 10, 224 - 14)
    assert np.array_equal(out[20:, :224], image)  # the picture is untouched, below the caption
    caption = out[:20, :]
    assert len(dark_rows(caption)) >= 7  # text, about a line high
    assert (caption.sum(axis=2) < 200).any(axis=0).nonzero()[0].max() > 150  # runs across most of the width
    bar = layout.bar
    assert tuple(out[bar.y, bar.x + bar.w // 2]) == ENDS["viridis"][1]  # top: 1
    assert tuple(out[bar.y + bar.h - 1, bar.x + bar.w // 2]) == ENDS["viridis"][0]  # bottom: 0
    middle = out[bar.y + (bar.h - 1) // 2, bar.x + bar.w // 2].astype(int)
    assert np.abs(middle - colormap_lut("viridis")[128]).max() <= 3
    labels_area = out[bar.y - 8 : bar.y + bar.h + 8, bar.x + bar.w + 3 :]
    assert (labels_area.sum(axis=2) < 200).sum() > 30  # tick labels drawn


def test_caption_scales_with_the_image_4000px():
    image = np.full((3000, 4000, 3), 200, np.uint8)
    out = labels.labelled(image, "Egyptian cat 0.52 · gradcam · layer4", "jet")
    layout = labels.label_layout(4000, 3000, "x", True)
    assert layout.text_px == 120 and out.shape[1] == 4000 + layout.size[0] - 4000
    band = out[: layout.image.y]
    rows = dark_rows(band)
    assert rows.max() - rows.min() >= 80  # glyphs ~ 0.7-1.0 em of 120 px: readable when shown at screen size
    bar = layout.bar
    assert tuple(out[bar.y, bar.x + 5]) == ENDS["jet"][1] and tuple(out[bar.y + bar.h - 1, bar.x + 5]) == ENDS["jet"][0]


def test_narrow_image_gets_a_canvas_wide_enough_for_its_caption():
    out = labels.labelled(np.zeros((40, 3, 3), np.uint8), "a long caption for a thin strip", None)
    assert out.shape[1] >= fonts.text_width("a long caption for a thin strip", fonts.MIN_TEXT_PX)
    assert out.shape[0] == 40 + labels.label_layout(3, 40, "x", False).image.y
    short_bar = labels.labelled(np.zeros((2, 50, 3), np.uint8), None, "jet")  # a bar needs some height
    assert short_bar.shape[0] > 2 * fonts.line_height(fonts.MIN_TEXT_PX)


def test_font_is_scalable_and_found_offline():
    small, large = fonts.get_font(11), fonts.get_font(120)
    assert isinstance(small, ImageFont.FreeTypeFont) and isinstance(large, ImageFont.FreeTypeFont)
    assert fonts.text_width("gradcam", 120) > 8 * fonts.text_width("gradcam", 11)


def test_fit_text_shrinks_then_keeps_both_ends():
    text, size = fonts.fit_text("stages.3.blocks.2.conv_dw", 20, 400)
    assert (text, size) == ("stages.3.blocks.2.conv_dw", 20)
    text, size = fonts.fit_text("stages.3.blocks.2.conv_dw", 20, 60)
    assert size == fonts.MIN_TEXT_PX and "…" in text and text[0] == "s" and text[-1] == "w"
    assert fonts.text_width(text, size) <= 60


def test_guided_image_is_zero_centred_and_spread_over_two_deviations():
    g = torch.zeros(1, 3, 8, 8)
    g[0, :, :4] = 1.0  # the top half is the part the model saw; the bottom half is outside its crop (zero)
    g[0, :, 0, 0], g[0, :, 0, 1] = 100.0, -100.0
    seen = g[g != 0]
    rms = float(seen.pow(2).mean().sqrt())  # the deviation about zero of the values that are not zero
    img = guided_image(g)[0].numpy()
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert np.all(img[6, 6] == 128)  # zero: mid-grey
    assert np.all(img[0, 0] == 255) and np.all(img[0, 1] == 0)  # beyond 2 deviations: clipped
    assert np.all(img[2, 2] == round((0.5 + 1.0 / (2 * 2 * rms)) * 255))
    assert np.all(guided_image(torch.zeros(2, 3, 4, 4)).numpy() == 128)  # no gradient: grey, not noise


def test_guided_image_has_contrast_on_real_photos(default_loaded, samples):
    from gradcam_cli import Explainer, ExplainOptions, load_rgb

    explainer = Explainer(default_loaded, ExplainOptions(outputs=("guided",), save_raw=True))
    [[e]] = explainer.explain_arrays([load_rgb(samples / "cat.png")])
    raw = e.guided_raw
    usual = np.clip((raw - raw.mean()) / (raw.std() + 1e-5) * 0.1 + 0.5, 0, 1) * 255  # 0.1 per deviation
    visible, visible_usual = (np.abs(e.guided.astype(int) - 128) > 16).mean(), (np.abs(usual - 128) > 16).mean()
    assert visible > 1.3 * visible_usual  # measured 0.131 against 0.090 on this photo
    assert ((e.guided == 0) | (e.guided == 255)).mean() < 0.04  # few values clipped (measured 1.8%)
    assert e.guided_raw.shape == (*e.map.shape, 3) and e.guided_raw.dtype == np.float32
    bright, dark = e.guided_raw > 1e-6, e.guided_raw < -1e-6  # the display keeps every value's sign
    assert np.all(e.guided[bright] >= 128) and np.all(e.guided[dark] <= 128)


def test_cli_caption_colorbar_colormap_and_raw_guided(tmp_path, samples):
    result = runner.invoke(
        app,
        [
            str(a)
            for a in (
                "explain",
                samples / "samoyed.png",
                "-o",
                tmp_path,
                "--json",
                "--caption",
                "--colorbar",
                "--colormap",
                "inferno",
                "--save-raw",
            )
        ],
    )
    assert result.exit_code == 0, result.output
    [rec] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    caption = f"{rec['class_name']} {rec['probability']:.2f} · gradcam · bn2"
    layout = labels.label_layout(128, 128, caption, True)  # 128 px is narrower than the caption: widened
    assert layout.size[0] > 128 + labels.colorbar_width(layout.text_px, layout.pad)
    for kind in ("heatmap", "overlay"):
        picture = np.asarray(Image.open(rec["files"][kind]).convert("RGB"))
        assert picture.shape[:2] == (layout.size[1], layout.size[0]), kind
        bar = layout.bar
        assert tuple(picture[bar.y, bar.x + 1]) == ENDS["inferno"][1], kind
        assert tuple(picture[bar.y + bar.h - 1, bar.x + 1]) == ENDS["inferno"][0], kind
        assert len(dark_rows(picture[: layout.image.y])) >= 7, kind  # the caption
    for kind in ("guided", "bbox"):  # untouched: the photo's size
        assert Image.open(rec["files"][kind]).size == (128, 128)
    schema = json.loads((ROOT / "gradcam_cli" / "record.schema.json").read_text())
    jsonschema.validate(rec, schema)
    raw = np.load(rec["files"]["guided_raw"])
    assert raw.shape == (128, 128, 3) and raw.dtype == np.float32


def test_unknown_colormap_is_a_usage_error(tmp_path, samples):
    result = runner.invoke(app, ["explain", str(samples / "cat.png"), "-o", str(tmp_path), "--colormap", "rainbow"])
    assert result.exit_code == 2 and "--colormap rainbow: unknown; choose from jet, viridis" in result.stderr


def test_all_boxes_are_drawn_and_labelled_with_their_share():
    photo = np.full((200, 300, 3), 128, np.uint8)
    regions = (Region((20, 40, 120, 160), 12000, 0.61), Region((200, 60, 260, 120), 3600, 0.23))
    e = Explanation(
        class_index=1,
        class_name="dog",
        probability=0.8,
        score=1.0,
        layer="layer4",
        method="gradcam",
        map=np.zeros((200, 300), np.float32),
        empty=False,
        bbox=regions[0].box,
        regions=regions,
    )
    from gradcam_cli.output.write import boxed

    both = boxed(photo, e, all_boxes=True)
    one = boxed(photo, e, all_boxes=False)
    for (x0, y0, x1, y1), colour in zip([r.box for r in regions], BOX_COLOURS):
        assert tuple(both[(y0 + y1) // 2, x0]) == colour and tuple(both[(y0 + y1) // 2, x1 - 1]) == colour
    assert tuple(one[90, 200]) == (128, 128, 128)  # without --bbox-mode all: the largest box only
    second = regions[1].box  # its label, "23%", sits on its top edge in its colour
    label = both[second[1] - 14 : second[1], second[0] : second[0] + 30]
    assert (np.all(label == BOX_COLOURS[1], axis=2)).sum() > 50 and (label.sum(axis=2) < 100).sum() > 10
    files = encode_outputs(photo, e, {"bbox": "x.png"}, 0.5, Look(all_boxes=True))
    assert set(files) == {"x.png"}
