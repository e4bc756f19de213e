"""Every colour mode and format becomes RGB, with EXIF orientation applied."""

import pytest
from PIL import Image

from helpers import SAMPLES


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    from gradcam_cli.io.images import load_rgb

    src = Image.open(SAMPLES / "samoyed.png").convert("RGB")
    if mode == "I;16":
        import numpy as np

        arr = np.asarray(src.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(arr)
        assert img.mode.startswith("I;16")
    else:
        img = src.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    arr = load_rgb(path)
    assert arr.shape == (src.height, src.width, 3) and arr.dtype.name == "uint8"
    assert arr.mean() > 20  # not black: values were rescaled, transparency composited


def test_formats_and_exif_orientation(tmp_path):
    from gradcam_cli.io.images import load_rgb

    src = Image.open(SAMPLES / "samoyed.png").convert("RGB").resize((120, 80))
    for ext in ("webp", "bmp", "tiff", "gif"):
        path = tmp_path / f"x.{ext}"
        src.save(path)
        assert load_rgb(path).shape == (80, 120, 3), ext
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    src.save(path, exif=exif)
    assert load_rgb(path).shape == (120, 80, 3)
