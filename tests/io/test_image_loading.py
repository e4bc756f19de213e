"""Bad, odd and hostile image files: each ends in one clear line or a valid image."""

import errno
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import ImageError
from gradcam_cli.io.images import load_rgb

from helpers import deny_reading, one_line, records, run, samoyed_photo


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header that declares ``width x height`` RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + _chunk(b"IEND", b"")
    )


def png_with_bad_crc() -> bytes:
    """A complete PNG whose pixel data is intact but whose IDAT checksum is wrong."""
    data = bytearray(_encoded(samoyed_photo(), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the CRC after the chunk's data
    return bytes(data)


def make_bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that must each be a one-line error: name -> (path, a word the cause must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = _encoded(samoyed_photo(), "JPEG", quality=90)
    png = _encoded(samoyed_photo(), "PNG")
    files = {
        "zero": ("zero.jpg", b"", "empty"),
        "truncated_jpeg": ("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated"),
        "truncated_jpeg_tail": ("truncated_tail.jpg", jpeg[:-2], "truncated"),  # only the end marker missing
        "truncated_png": ("truncated.png", png[: len(png) // 2], "truncated"),
        "text_as_jpeg": ("notes.jpg", b"this is not a photo\n", "not an image"),
        "bad_crc": ("badcrc.png", png_with_bad_crc(), "checksum"),
        "bomb": ("bomb.png", png_declaring(100_000, 100_000), "too large"),
    }
    out = {}
    for key, (name, data, cause) in files.items():
        (folder / name).write_bytes(data)
        out[key] = (folder / name, cause)
    (folder / "folder.jpg").mkdir(exist_ok=True)
    out["directory"] = (folder / "folder.jpg", "directory")
    out["missing"] = (folder / "missing.jpg", "no such file")
    return out


def make_good_files(folder: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """Files that must each work: name -> (path, the (width, height) every output must have)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    photo = samoyed_photo()
    out = {}

    def add(key, name, img, size=None, **kw):
        path = folder / name
        img.save(path, **kw)
        out[key] = (path, size or img.size)

    add("1x1", "one.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    ramp = np.tile(np.linspace(0, 255, 5000, dtype=np.uint8)[None, :, None], (3, 1, 3))
    add("5000x3", "thin.png", Image.fromarray(ramp))
    add("16bit_gray", "gray16.png", Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257))
    cv2.imwrite(str(folder / "rgb16.png"), np.asarray(photo)[:, :, ::-1].astype(np.uint16) * 257)
    out["16bit_rgb"] = (folder / "rgb16.png", photo.size)
    add("grayscale", "gray.png", photo.convert("L"))
    add("palette_transparency", "palette.png", _palette_with_transparency(), transparency=0)
    add("rgba", "rgba.png", _half_transparent())
    add("cmyk", "cmyk.jpg", photo.convert("CMYK"), quality=95)
    for orientation in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        add(f"exif{orientation}", f"exif{orientation}.jpg", photo, (photo.height, photo.width), exif=exif)
    frames = [Image.new("RGB", (80, 60), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    add("animated_gif", "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=50, loop=0)
    add("multipage_tiff", "pages.tif", frames[0], save_all=True, append_images=frames[1:])
    add("name_spaces", "my holiday photo.jpg", photo)
    add("name_unicode", "ünïcødé 猫 фото.png", photo)
    add("name_leading_dash", "-x.jpg", photo)
    return out


def _palette_with_transparency() -> Image.Image:
    img = Image.new("P", (60, 40), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.paste(1, (30, 0, 60, 40))  # left half index 0 (transparent red), right half index 1 (blue)
    return img


def _half_transparent() -> Image.Image:
    arr = np.zeros((40, 60, 4), dtype=np.uint8)
    arr[:, :30] = (255, 0, 0, 0)  # invisible red
    arr[:, 30:] = (0, 255, 0, 255)  # opaque green
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    return make_good_files(tmp_path_factory.mktemp("good"))


BAD = [
    "zero",
    "truncated_jpeg",
    "truncated_jpeg_tail",
    "truncated_png",
    "text_as_jpeg",
    "bad_crc",
    "bomb",
    "directory",
    "missing",
]


@pytest.mark.parametrize("case", BAD)
def test_loader_refuses_bad_image_with_one_line(bad_files, case):
    path, cause = bad_files[case]
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert cause in message.lower(), message
    assert one_line(message)


def test_truncated_images_are_never_allowed():
    import timm  # noqa: F401
    import torchvision  # noqa: F401
    from PIL import ImageFile

    import gradcam_cli.explainer  # noqa: F401
    import gradcam_cli.job.explain  # noqa: F401  everything the CLI imports, timm and torchvision included

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bomb_is_refused_before_decoding(tmp_path):
    import resource
    import time

    for width, height in ((100_000, 100_000), (12_000, 12_000)):  # far above, and just above, the limit
        path = tmp_path / f"bomb{width}.png"
        path.write_bytes(png_declaring(width, height))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with pytest.raises(ImageError, match="too large"):
            load_rgb(path)
        assert time.perf_counter() - start < 1.0
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 50, f"decoding started: peak memory grew {grown_mb:.0f} MB"


def test_loader_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "locked.jpg"
    samoyed_photo().save(path)
    deny_reading(monkeypatch, path)
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    assert str(info.value) == f"{path}: permission denied"


def test_loader_permission_denied_by_pillow(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    samoyed_photo().save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        load_rgb(path)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0,
    reason="root reads files whatever their mode; the patched tests above cover this path",
)
def test_loader_real_chmod_000(tmp_path):
    path = tmp_path / "locked.jpg"
    samoyed_photo().save(path)
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied"):
            load_rgb(path)
    finally:
        path.chmod(0o644)


def test_loader_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_rgb(fifo)


GOOD = [
    "1x1",
    "5000x3",
    "16bit_gray",
    "16bit_rgb",
    "grayscale",
    "palette_transparency",
    "rgba",
    "cmyk",
    "exif6",
    "exif8",
    "animated_gif",
    "multipage_tiff",
    "name_spaces",
    "name_unicode",
    "name_leading_dash",
]


@pytest.mark.parametrize("case", GOOD)
def test_loader_reads_odd_but_valid_images(good_files, case):
    path, (width, height) = good_files[case]
    arr = load_rgb(path)
    assert arr.shape == (height, width, 3) and arr.dtype == np.uint8
    photo = np.asarray(samoyed_photo(), dtype=np.int16)
    if case == "1x1":
        assert arr[0, 0].tolist() == [200, 10, 10]
    elif case == "5000x3":
        assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255
    elif case in ("16bit_gray", "grayscale"):
        gray = np.asarray(samoyed_photo().convert("L"), dtype=np.int16)
        assert np.abs(arr[..., 0].astype(np.int16) - gray).max() <= 1  # 16 bits scaled by 1/257, not stretched
        assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    elif case in ("16bit_rgb", "cmyk"):
        assert np.abs(arr.astype(np.int16) - photo).mean() < 4
    elif case in ("palette_transparency", "rgba"):
        assert (arr[:, :30] == 255).all(), "transparent pixels are composited on white"
        assert arr[:, 30:].tolist()[0][0] == ([0, 0, 255] if case == "palette_transparency" else [0, 255, 0])
    elif case in ("animated_gif", "multipage_tiff"):
        assert (arr == [255, 0, 0]).all(), "the first frame / page"


def test_exif_orientation_rotates_the_pixels(tmp_path):
    stored = np.zeros((60, 100, 3), dtype=np.uint8)
    stored[5:20, 40:60] = 255  # bright block at the top of the stored (landscape) pixels
    for orientation, rotate in ((6, -1), (8, 1)):  # 6: display rotated 90° clockwise; 8: counter-clockwise
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        Image.fromarray(stored).save(path, exif=exif, quality=98)
        arr = load_rgb(path)
        assert arr.shape == (100, 60, 3)
        expected = np.rot90(stored, k=rotate)
        assert np.abs(arr.astype(np.int16) - expected).mean() < 3


def test_batch_of_bad_and_odd_images(tmp_path, bad_files, good_files, monkeypatch):
    locked = bad_files["zero"][0].parent / "locked.jpg"
    samoyed_photo().save(locked)
    deny_reading(monkeypatch, locked)
    bad = {**{k: v[0] for k, v in bad_files.items()}, "unreadable": locked}
    causes = {**{k: v[1] for k, v in bad_files.items()}, "unreadable": "permission denied"}
    paths = [str(p) for p in bad.values()] + [str(p) for p, _ in good_files.values()]
    out = tmp_path / "out"
    result = run("explain", "-", "-o", out, "--json", "-b", "4", "--device", "cpu", input="\n".join(paths) + "\n")
    assert result.exit_code == 1, result.output
    recs = records(result)
    errors = {r["input"]: r["error"] for r in recs if "error" in r}
    assert set(errors) == {str(p) for p in bad.values()}
    for key, path in bad.items():
        message = errors[str(path)]
        assert message.startswith(f"{path}: ") and causes[key] in message.lower() and one_line(message), message
        assert f"gradcam: {message}\n" in result.stderr  # each error is one stderr line too
    ok = [r for r in recs if "error" not in r]
    assert {r["input"] for r in ok} == {str(p) for p, _ in good_files.values()}
    for key, (path, size) in good_files.items():
        [rec] = [r for r in ok if r["input"] == str(path)]
        assert rec["image_size"] == list(size), key
        assert set(rec["files"]) == {"heatmap", "overlay", "guided", "bbox"}
        for kind, file in rec["files"].items():
            assert Path(file).parent == out / path.parent.name  # mirrors the input tree
            with Image.open(file) as img:
                img.load()
                assert img.format == "PNG" and img.size == size and img.mode == "RGB", (key, kind)
    assert f"{len(good_files)} done, 0 skipped, {len(bad)} failed of {len(bad) + len(good_files)}" in result.stderr
    assert "Traceback" not in result.output and "Warning" not in result.stderr
    manifest = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(manifest) == len(recs)
