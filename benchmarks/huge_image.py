"""What one huge photo costs `gradcam explain`: wall time, CPU time and peak memory, in fresh processes.

Makes a photo just inside the pixel limit (120 Mpx) as PNG (written row by row) and as JPEG,
and a small photo for the start-up cost, then runs the command on each with its defaults
(``--max-output-pixels``, all four outputs) and reports, per run: wall seconds, CPU seconds
(user + system, all threads: on an otherwise idle 2-core machine the wall time lies between
half of it and all of it), peak resident memory, and the size the outputs were made at.

    python benchmarks/huge_image.py [--megapixels 119.9] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": code, "peak_mib": used.ru_maxrss / 1024, "wall_s": time.perf_counter() - start,
                  "cpu_s": used.ru_utime + used.ru_stime}))
"""


def size_for(megapixels: float) -> tuple[int, int]:
    height = int((megapixels * 1e6 / 1.1) ** 0.5)
    return int(height * 1.1), height


def photo_rows(width: int, height: int):
    """A smooth photo-like pattern with a bright square, one row at a time (RGB bytes)."""
    x = np.linspace(0, 1, width)
    for y in range(height):
        t = y / height
        row = np.stack([160 * x + 40 * t, 120 * (1 - x) + 60 * t, np.full(width, 90 + 60 * t)], axis=1)
        if 0.4 < t < 0.6:
            row[int(0.55 * width) : int(0.72 * width)] = 250
        yield row.astype(np.uint8).tobytes()


def write_png(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    deflate = zlib.compressobj(6)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for row in photo_rows(width, height):
            data = deflate.compress(b"\x00" + row)
            if data:
                fh.write(chunk(b"IDAT", data))
        fh.write(chunk(b"IDAT", deflate.flush()) + chunk(b"IEND", b""))


def write_jpeg(path: Path, width: int, height: int) -> None:
    pixels = np.frombuffer(b"".join(photo_rows(width, height)), np.uint8).reshape(height, width, 3)
    Image.fromarray(pixels).save(path, quality=90)


def measure(photo: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "gradcam_cli", "explain", str(photo), "-o", str(out), "--overwrite"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, env=env)
    figures = json.loads(done.stdout)
    if figures["rc"] == 0:
        [record] = [
            json.loads(line)
            for line in (out / "results.jsonl").read_text().splitlines()
            if json.loads(line)["input"] == str(photo)
        ]
        figures.update(image_size=record["image_size"], output_size=record["output_size"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=119.9)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    width, height = size_for(args.megapixels)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = {"small (start-up)": ROOT / "sample_images" / "cat.png"}
        for kind, write in (("png", write_png), ("jpg", write_jpeg)):
            photos[f"{width}x{height} {kind.upper()}"] = path = folder / f"huge.{kind}"
            write(path, width, height)
        print(f"machine: {os.cpu_count()} CPUs; photos of {width}x{height} = {width * height / 1e6:.1f} Mpx")
        for name, photo in photos.items():
            for run in range(args.runs):
                f = measure(photo, folder / "out")
                made = (
                    f"outputs {f['output_size'][0]}x{f['output_size'][1]}" if "output_size" in f else f"exit {f['rc']}"
                )
                print(
                    f"{name:>24}  run {run + 1}: wall {f['wall_s']:5.1f} s, CPU {f['cpu_s']:5.1f} s, "
                    f"peak {f['peak_mib']:6.0f} MiB, {made}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
