"""Huge photos are decoded and explained at a bounded size; the pixel limit is stated once."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import ImageError

from helpers import manifest_records


def write_png_rows(path: Path, width: int, height: int, row) -> None:
    """An RGB PNG written row by row (``row(y)`` gives the bytes), so the test never holds the whole image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    deflate = zlib.compressobj(1)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for y in range(height):
            data = deflate.compress(b"\x00" + row(y))
            if data:
                fh.write(chunk(b"IDAT", data))
        fh.write(chunk(b"IDAT", deflate.flush()) + chunk(b"IEND", b""))


# Runs a command and reports its peak resident memory (all its processes) and times, as JSON.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": code, "peak_mib": used.ru_maxrss / 1024, "wall_s": time.perf_counter() - start,
                  "cpu_s": used.ru_utime + used.ru_stime}))
"""


def test_huge_png_is_explained_at_a_bounded_size(tmp_path):
    width, height = 11_000, 10_900  # 119.9 Mpx: just inside the pixel limit
    plain = bytes(np.linspace(40, 200, width * 3).astype(np.uint8))
    block = bytearray(plain)
    block[3 * 6000 : 3 * 8000] = b"\xff" * 3 * 2000  # a bright square in the middle
    path = tmp_path / "huge.png"
    write_png_rows(path, width, height, lambda y: bytes(block) if 4000 <= y < 6000 else plain)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gradcam_cli", "explain", path, "-o", out]
    measured = subprocess.run([sys.executable, "-c", MEASURE, *map(str, cmd)], capture_output=True, text=True)
    figures = json.loads(measured.stdout)
    assert figures["rc"] == 0, measured.stderr
    assert figures["peak_mib"] < 2048, figures  # it took 14.7 GB when maps and pictures were made at full size
    assert figures["wall_s"] < 60, figures  # a minute before; benchmarks/huge_image.py has the real figure
    [record] = manifest_records(out)
    assert record["image_size"] == [width, height]
    shown = record["output_size"]
    assert shown[0] * shown[1] <= 16_000_000 and abs(shown[0] / shown[1] - width / height) < 0.01
    for file in record["files"].values():
        with Image.open(file) as img:
            assert list(img.size) == shown
    x0, y0, x1, y1 = record["bbox"]  # in the original photo's pixels
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert x1 - x0 > shown[0] or y1 - y0 > shown[1]  # scaled up from the smaller picture


# Decodes a photo in a fresh process and reports the peak memory the decode added, in MiB.
DECODE = """
import json, resource, sys
from gradcam_cli.io.images import load_photo
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
small, full = load_photo(sys.argv[1], max_pixels=int(sys.argv[2]))
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"shape": small.shape, "full": full, "grown_mib": grown, "centre": small[271, 631].tolist()}))
"""


def test_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    photo = np.zeros((4800, 6400, 3), np.uint8)
    photo[1000:2000, 3000:4000] = 255
    Image.fromarray(photo).save(path, quality=80)
    done = subprocess.run([sys.executable, "-c", DECODE, str(path), "1000000"], capture_output=True, text=True)
    found = json.loads(done.stdout)
    assert found["full"] == [6400, 4800] and found["shape"] == [866, 1154, 3]
    assert found["grown_mib"] < 40, found  # decoded in full it holds 117 MiB: the JPEG was read at 1/4 scale
    assert min(found["centre"]) > 240  # the white square's centre, scaled


def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG that declare ``width x height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("width,height", [(11_000, 11_000), (20_000, 20_000)])  # above the limit, above twice it
def test_the_pixel_limit_is_stated_once(tmp_path, width, height):
    from gradcam_cli.io.images import MAX_PIXELS, load_rgb

    path = tmp_path / "too_big.png"
    path.write_bytes(png_declaring(width, height))
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    assert MAX_PIXELS == 120_000_000
    assert "the limit is 120 Mpx, 120,000,000 pixels" in str(info.value)
    assert f"{width * height:,} pixels" in str(info.value)
