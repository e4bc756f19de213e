"""Formats Pillow may not read here are reported; HEIC and AVIF photos are read when a plugin is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SAMPLES, records, run


def test_image_formats_pillow_cannot_read_here_are_reported(tmp_path, monkeypatch):
    from gradcam_cli.io import images

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "cat.png").write_bytes((SAMPLES / "cat.png").read_bytes())
    (folder / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (folder / "layers.psd").write_bytes(b"8BPS" + b"\x00" * 30)  # a PSD header and nothing after it
    monkeypatch.setattr(images, "_HEIF", [False])  # as where pillow-heif is not installed
    result = run("explain", folder, "-o", tmp_path / "out", "--outputs", "heatmap", "--json")
    assert result.exit_code == 1, result.output
    errors = {Path(r["input"]).name: r["error"] for r in records(result) if "error" in r}
    assert errors == {
        "logo.svg": f"{folder / 'logo.svg'}: an SVG drawing, not a raster image: convert it to PNG first "
        "(e.g. rsvg-convert)",
        "phone.heic": f"{folder / 'phone.heic'}: a HEIC/HEIF image, which needs the pillow-heif plugin "
        "(pip install pillow-heif)",
        "layers.psd": f"{folder / 'layers.psd'}: corrupt PSD file (its header cannot be read)",
    }


def test_heic_and_avif_photos_are_read(tmp_path, monkeypatch):
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import features

    from gradcam_cli.io import images

    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:, :30] = (200, 30, 30)
    pillow_heif.from_bytes(mode="RGB", size=(60, 40), data=photo.tobytes()).save(tmp_path / "phone.heic", quality=95)
    monkeypatch.setattr(images, "_HEIF", [])  # not registered yet: the first HEIC file registers the plugin
    heic = images.load_rgb(tmp_path / "phone.heic")
    assert heic.shape == (40, 60, 3) and np.abs(heic[20, 10].astype(int) - [200, 30, 30]).max() < 12
    if features.check("avif"):
        Image.fromarray(photo).save(tmp_path / "photo.avif", quality=95)
        avif = images.load_rgb(tmp_path / "photo.avif")
        assert avif.shape == (40, 60, 3) and np.abs(avif[20, 10].astype(int) - [200, 30, 30]).max() < 12
