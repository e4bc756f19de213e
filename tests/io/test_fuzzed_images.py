"""Fuzzed image files either load or raise ImageError; extreme aspect ratios stay bounded."""

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam_cli.errors import ImageError
from gradcam_cli.io.images import load_rgb

from helpers import SAMPLES


def _seed(fmt: str) -> bytes:
    """A real photo re-encoded at 64 px, small enough that a few mutations touch headers and data alike."""
    img = Image.open(SAMPLES / ("hot_dog.jpg" if fmt == "JPEG" else "cat.png")).convert("RGB")
    img.thumbnail((64, 64))
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buf.getvalue()


SEEDS = {"png": _seed("PNG"), "jpeg": _seed("JPEG")}


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk checksum so a mutation reaches the decoder instead of the CRC check."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out = bytearray(data[:8])
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        kind_and_body = data[pos + 4 : end]
        out += data[pos:end] + struct.pack(">I", zlib.crc32(kind_and_body) & 0xFFFFFFFF)
        pos = end + 4
    return bytes(out + data[pos:])


@st.composite
def mutated_files(draw):
    kind = draw(st.sampled_from(["random", "png", "png_crc_fixed", "jpeg"]))
    if kind == "random":
        return draw(st.binary(max_size=1024))
    data = bytearray(SEEDS["jpeg" if kind == "jpeg" else "png"])
    for _ in range(draw(st.integers(1, 6))):
        # Half the edits land in the first 200 bytes, where the headers and sizes are.
        limit = len(data) if draw(st.booleans()) else min(len(data), 200)
        if limit == 0:
            break
        at = draw(st.integers(0, limit - 1))
        op = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "duplicate", "max"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        else:  # a field at its maximum: sizes, lengths, counts
            data[at : at + 2] = b"\xff\xff"
    data = bytes(data)
    return _fix_png_crcs(data) if kind == "png_crc_fixed" else data


def test_seeds_are_valid_images(tmp_path):
    for name, data in SEEDS.items():
        (tmp_path / name).write_bytes(data)
        arr = load_rgb(tmp_path / name)
        assert arr.ndim == 3 and max(arr.shape[:2]) == 64, name


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(data=mutated_files(), suffix=st.sampled_from([".jpg", ".png", ".gif", ".tif", ".bin"]))
def test_loader_either_loads_or_raises_image_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            arr = load_rgb(path)
        except ImageError as err:  # anything else escaping fails the test
            message = str(err)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
        else:
            assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8
            assert arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[0] >= 1 and arr.shape[1] >= 1


def test_extreme_aspect_ratio_does_not_materialise_a_huge_resize(monkeypatch):
    from gradcam_cli.maps.preprocess import PreprocessConfig, to_model_input

    real_resize = Image.Image.resize

    def bounded_resize(self, size, *args, **kwargs):
        assert size[0] * size[1] <= 4 * 256 * 256, f"resize to {size[0]}x{size[1]} for a 224x224 crop"
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", bounded_resize)
    photo = np.random.default_rng(0).integers(0, 256, size=(1, 50_000, 3), dtype=np.uint8)
    tensor, geometry = to_model_input(photo, PreprocessConfig((224, 224), 256))
    assert tuple(tensor.shape) == (3, 224, 224)
