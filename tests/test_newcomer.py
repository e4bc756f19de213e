"""A newcomer's first runs: file modes, re-runs, layouts, huge photos, odd folders and formats, bad requests,
offline weights and what a person reads. The file-mode, manifest, layout and huge-image cases run the real
command in a subprocess (``python -m gradcam_cli``, this checkout through the inherited PYTHONPATH)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from gradcam_cli.cli import app
from gradcam_cli.errors import ImageError, UsageError
from gradcam_cli.options import ExplainOptions, default_of
from helpers import gradcam_here

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
runner = CliRunner()


def gradcam(*args, input=None, env=None, umask=None, timeout=300):
    """The installed command, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "gradcam_cli", *map(str, args)], input=input, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def stdout_records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- data and files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    out = tmp_path / "out"
    done = gradcam("explain", SAMPLES / "cat.png", "-o", out, umask=umask)
    assert done.returncode == 0, done.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.jsonl", "cat_gradcam_bn2_c285_overlay.png"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


def test_layer_cache_follows_the_umask(tmp_path):
    # The cache of layer tables holds names and shapes only; a team's shared GRADCAM_CACHE_DIR must be readable.
    code = "from gradcam_cli.model.layer_cache import write_table; write_table('k', {'layers': []})"
    env = dict(os.environ, GRADCAM_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, preexec_fn=lambda: os.umask(0o022))
    assert stat.S_IMODE((tmp_path / "layers-k.json").stat().st_mode) == 0o644


def test_rerun_without_overwrite_never_loses_a_good_record(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.png", "dogs.png"):
        (photos / name).write_bytes((SAMPLES / name).read_bytes())
    out = tmp_path / "out"
    first = gradcam_here("explain", photos / "cat.png", photos / "dogs.png", "-o", out, "--outputs", "heatmap")
    assert first.returncode == 0, first.stderr
    good = manifest(out)
    assert len(good) == 2 and not any("error" in r for r in good)

    (photos / "bird.png").write_bytes((SAMPLES / "bird.png").read_bytes())
    again = gradcam_here("explain", photos, "-o", out, "--outputs", "heatmap")  # no --overwrite: two of three exist
    assert again.returncode == 1
    assert again.stderr.count("output exists") == 2, again.stderr
    after = {r["input"]: r for r in manifest(out)}
    for record in good:  # the earlier records, unchanged
        assert after[record["input"]] == record
    assert "error" not in after[str(photos / "bird.png")]  # and the new image's

    (photos / "dogs.png").write_bytes(b"now corrupt")
    third = gradcam_here("explain", photos / "dogs.png", "-o", out, "--outputs", "heatmap", "--overwrite")
    assert third.returncode == 1 and "dogs.png: not an image file" in third.stderr
    assert {r["input"]: r for r in manifest(out)}[str(photos / "dogs.png")] == good[1]


@pytest.mark.parametrize("how", ["arguments", "stdin"])
def test_a_missing_input_does_not_move_the_other_outputs(tmp_path, how):
    photo = tmp_path / "shoot" / "day1" / "cat.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes((SAMPLES / "cat.png").read_bytes())
    missing = tmp_path / "elsewhere" / "gone.png"

    def files_of(paths, out):
        args = ("-",) if how == "stdin" else paths
        text = "".join(f"{p}\n" for p in paths) if how == "stdin" else None
        done = gradcam_here("explain", *args, "-o", out, "--outputs", "heatmap", input=text)
        return done, {r["input"]: r.get("files") for r in manifest(out)}

    alone, files_alone = files_of([photo], tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    mixed, files_mixed = files_of([photo, missing], tmp_path / "mixed")
    assert mixed.returncode == 1 and f"{missing}: no such file" in mixed.stderr
    placed = Path(files_mixed[str(photo)]["heatmap"]).relative_to(tmp_path / "mixed")
    assert placed == Path(files_alone[str(photo)]["heatmap"]).relative_to(tmp_path / "alone")
    assert placed == Path("cat_gradcam_bn2_c285_heatmap.png")


def test_stdin_paths_lose_their_line_ending_only():
    import io

    from gradcam_cli.io.inputs import read_stdin_paths

    crlf = b"trailing space.png \r\nends in cr.png\r\r\nplain.png\r\n\r\n   \nlast.png"
    assert read_stdin_paths(False, io.BytesIO(crlf)) == [
        "trailing space.png ", "ends in cr.png\r", "plain.png", "   ", "last.png"]
    assert read_stdin_paths(True, io.BytesIO(b"two\nlines.png\0 spaced .png\0")) == ["two\nlines.png", " spaced .png"]


def test_names_with_spaces_and_newlines_through_the_command(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = [folder / "space at end.png ", folder / "new\nline.png", folder / "ends in a carriage return.png\r"]
    for path in odd:
        path.write_bytes((SAMPLES / "cat.png").read_bytes())
    out = tmp_path / "out"
    listing = ("\0".join(map(str, odd)) + "\0").encode()  # bytes: no newline translation on the way
    result = invoke("explain", "-0", "-", "-o", out, "--outputs", "heatmap", "--json", input=listing)
    assert result.exit_code == 0, result.output
    assert {r["input"] for r in stdout_records(result)} == set(map(str, odd))
    crlf = f"{odd[0]}\r\n{odd[2]}\r\n".encode()  # a Windows list: each line loses its "\r\n", nothing else
    result = invoke("explain", "-", "-o", out, "--outputs", "heatmap", "--json", "--overwrite", input=crlf)
    assert result.exit_code == 0, result.output
    assert [r["input"] for r in stdout_records(result)] == [str(odd[0]), str(odd[2])]


# --- huge images --------------------------------------------------------------------------------------------

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
    block[3 * 6000:3 * 8000] = b"\xff" * 3 * 2000  # a bright square in the middle
    path = tmp_path / "huge.png"
    write_png_rows(path, width, height, lambda y: bytes(block) if 4000 <= y < 6000 else plain)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gradcam_cli", "explain", path, "-o", out]
    measured = subprocess.run([sys.executable, "-c", MEASURE, *map(str, cmd)], capture_output=True, text=True)
    figures = json.loads(measured.stdout)
    assert figures["rc"] == 0, measured.stderr
    assert figures["peak_mib"] < 2048, figures  # it took 14.7 GB when maps and pictures were made at full size
    assert figures["wall_s"] < 60, figures  # a minute before; benchmarks/huge_image.py has the real figure
    [record] = manifest(out)
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
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


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


# --- folders that cannot be read, formats Pillow cannot read --------------------------------------------

def deny_listing(monkeypatch, folder: Path) -> None:
    """``folder`` cannot be listed (tests run as root, where chmod 000 would not stop it)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) == os.path.abspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    (root / "cat.png").write_bytes((SAMPLES / "cat.png").read_bytes())
    (root / "locked" / "dogs.png").write_bytes((SAMPLES / "dogs.png").read_bytes())
    return root


def test_an_unreadable_subfolder_is_a_failure_naming_it(tree, tmp_path, monkeypatch):
    deny_listing(monkeypatch, tree / "locked")
    out = tmp_path / "out"
    result = invoke("explain", tree, "-r", "-o", out, "--outputs", "heatmap")
    assert result.exit_code == 1, result.output
    message = f"{tree / 'locked'}: cannot list this folder (Permission denied)"
    assert f"gradcam: {message}\n" in result.stderr
    assert {"input": str(tree / "locked"), "error": message} in manifest(out)
    assert any(r.get("input") == str(tree / "cat.png") and "error" not in r for r in manifest(out))


def test_an_unreadable_folder_given_directly_is_a_bad_request(tree, tmp_path, monkeypatch):
    deny_listing(monkeypatch, tree / "locked")
    result = invoke("explain", tree / "locked", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (f"gradcam: error: no input images found: {tree / 'locked'}: "
                             f"cannot list this folder (Permission denied)\n")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root lists any folder; the tests above patch it")
def test_a_really_unreadable_subfolder(tree, tmp_path):
    (tree / "locked").chmod(0)
    try:
        result = invoke("explain", tree, "-r", "-o", tmp_path / "out", "--outputs", "heatmap")
    finally:
        (tree / "locked").chmod(0o755)
    assert result.exit_code == 1 and "cannot list this folder (Permission denied)" in result.stderr


def test_image_formats_pillow_cannot_read_here_are_reported(tmp_path, monkeypatch):
    from gradcam_cli.io import images

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "cat.png").write_bytes((SAMPLES / "cat.png").read_bytes())
    (folder / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (folder / "layers.psd").write_bytes(b"8BPS" + b"\x00" * 30)  # a PSD header and nothing after it
    monkeypatch.setattr(images, "_HEIF", [False])  # as where pillow-heif is not installed
    result = invoke("explain", folder, "-o", tmp_path / "out", "--outputs", "heatmap", "--json")
    assert result.exit_code == 1, result.output
    errors = {Path(r["input"]).name: r["error"] for r in stdout_records(result) if "error" in r}
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


def test_a_map_without_a_box_says_why(tmp_path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "one.png")
    result = invoke("explain", tmp_path / "one.png", "-o", tmp_path / "out", "--json", "--outputs", "heatmap")
    assert result.exit_code == 0, result.output
    [record] = stdout_records(result)
    assert record["bbox"] is None and record["map_empty"] is False
    [why] = record["warnings"]
    threshold = default_of(ExplainOptions, "bbox_threshold")
    assert why.startswith(f"no box: no pixel of the photo reaches --bbox-threshold {threshold} (the highest is ")
    height, width = record["grid"]
    assert f"the 1x1 photo has fewer pixels than the map's {height}x{width} cells" in why


# --- requests -----------------------------------------------------------------------------------------------

HEAVY = ("torch", "timm", "torchvision", "cv2", "numpy")
PROBE = """
import json, sys
from gradcam_cli.cli import main
sys.argv = ["gradcam"] + json.loads(sys.argv[1])
try:
    main()
except SystemExit as exit:
    print("EXIT=%%s" %% exit.code)
print("IMPORTED=" + json.dumps(sorted(m for m in %r if m in sys.modules)))
""" % (HEAVY,)


@pytest.mark.parametrize("flags,needle", [
    (["--method", "gradcam++"], "--method gradcam++: unknown"),
    (["--class", "cat"], "'tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat'"),
    (["--class", "1000"], "out of range, the model has classes 0..999"),
    (["--class", "tabby", "--top-k", "3"], "--class and --top-k conflict"),
    (["--overwrite", "--skip-existing"], "--overwrite and --skip-existing conflict"),
    (["--weights", "/nonexistent/model.pt"], "--weights /nonexistent/model.pt: no such file"),
    (["--num-classes", "2", "--labels", "LABELS", "--class", "zebra"],
     "--class 'zebra': no class of that name; did you mean: 'zebu'?"),
    (["--labels", "LABELS"], "has 2 names but the model has 1000 classes"),
    (["--max-output-pixels", "0"], "--max-output-pixels 0: must be at least 1"),
])
def test_bad_requests_are_refused_before_anything_is_loaded(tmp_path, flags, needle):
    labels = tmp_path / "labels.txt"
    labels.write_text("zebu\nyak\n")
    flags = [str(labels) if f == "LABELS" else f for f in flags]
    import resource

    args = ["explain", str(SAMPLES / "cat.png"), "-o", str(tmp_path / "out"), *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert "EXIT=2" in done.stdout, done.stderr
    assert done.stderr.startswith("gradcam: error: ") and needle in done.stderr and done.stderr.count("\n") == 1
    assert done.stdout.rpartition("IMPORTED=")[2].strip() == "[]"  # no torch, no timm: the model was never built
    # Start-up included, in processor time (the wall time on an idle machine; a shared one only stretches it).
    seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert seconds < 1.5, f"{seconds:.2f} s"
    assert not (tmp_path / "out").exists()


def test_class_suggestions_rank_meaning_before_spelling():
    from gradcam_cli.model.labels import imagenet_labels, resolve_class

    def suggested(word):
        with pytest.raises(UsageError) as info:
            resolve_class(word, imagenet_labels(), 1000)
        return re.findall(r"'([^']+)'", str(info.value).split("did you mean:")[1])

    assert suggested("cat") == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert suggested("big cat") == ["leopard", "snow leopard", "jaguar", "lion", "tiger"]  # WordNet's "big cat"
    assert suggested("tabbby")[0] == "tabby"  # no meaning: spelling
    assert resolve_class("Tabby Cat", imagenet_labels(), 1000) == 281


def test_imagenet_names_are_timms():
    from timm.data import ImageNetInfo

    from gradcam_cli.model.labels import imagenet_descriptions

    info = ImageNetInfo()
    assert imagenet_descriptions() == tuple(info.index_to_description(i) for i in range(1000))


def suggested_layers(message: str) -> list[str]:
    """The layer names a --layer error suggests: after "did you mean:", or after "before it is"."""
    if "did you mean: " in message:
        return message.split("did you mean: ")[1].rstrip("?\n").split(", ")
    if "before it is " in message:
        return [message.split("before it is ")[1].strip()]
    return []


def test_layer_suggestions_come_from_the_layers_listing(tmp_path):
    listed = {r["path"] for r in json.loads(invoke("layers", "--model", "resnet18", "--json").stdout)}
    for layer, expected in (("fc", ["layer4"]), ("layer4.1.act9", None), ("layer9", None)):
        result = invoke("explain", SAMPLES / "cat.png", "--model", "resnet18", "--no-pretrained",
                        "--layer", layer, "-o", tmp_path / "out")
        assert result.exit_code == 2, result.output
        names = suggested_layers(result.stderr)
        assert names and set(names) <= listed, (layer, result.stderr)
        assert expected is None or names == expected, result.stderr


def offline_run(tmp_path, model, **env):
    """``gradcam explain`` with pretrained weights that are not cached, with ``env`` instead of
    HF_HUB_OFFLINE; returns (completed process, seconds)."""
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environ.update(env, HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"))
    start = time.perf_counter()
    done = gradcam("explain", SAMPLES / "cat.png", "--model", model, "-o", tmp_path / "out", env=environ)
    return done, time.perf_counter() - start


def assert_one_full_line(done, model: str, cache: Path, why: str) -> None:
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"gradcam: error: --model {model}: its pretrained weights are not in the cache ({cache})")
    assert re.search(why, line), line
    assert "--weights FILE" in line and "--no-pretrained" in line and line.endswith("while online.")


def test_offline_hub_weights_fail_fast_in_one_full_line(tmp_path):
    # The hub unreachable: a closed local port (never the real network). Before, the client retried for ~50 s.
    unreachable, seconds = offline_run(tmp_path, "resnet18", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert_one_full_line(unreachable, "timm/resnet18", tmp_path / "hf" / "hub",
                         r"\(127\.0\.0\.1 cannot be reached: Connection refused\)")
    offline, baseline = offline_run(tmp_path, "resnet18", HF_HUB_OFFLINE="1")  # same start-up, no network at all
    assert_one_full_line(offline, "timm/resnet18", tmp_path / "hf" / "hub", r"\(HF_HUB_OFFLINE is set\)")
    # The client's retries took 46 s (1+2+4+8+8 s for each of two file names); the check takes a refused connect.
    assert seconds - baseline < 10, f"{seconds:.1f} s against {baseline:.1f} s without any network"


def test_offline_torchvision_weights_fail_in_one_full_line(tmp_path):
    dead_proxy = f"http://127.0.0.1:{closed_port()}"  # download.pytorch.org through it: never the real network
    done, seconds = offline_run(tmp_path, "torchvision/resnet18", https_proxy=dead_proxy)
    assert_one_full_line(done, "torchvision/resnet18", tmp_path / "torch" / "hub" / "checkpoints",
                         r"download\.pytorch\.org cannot be reached through the proxy 127\.0\.0\.1:\d+: "
                         r"Connection refused")


def test_pretrained_weights_in_the_cache_need_no_network(tmp_path):
    import timm
    from safetensors.torch import save_file

    snapshot = tmp_path / "hf" / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), snapshot / "model.safetensors")
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environ.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    done = gradcam("explain", SAMPLES / "cat.png", "--model", "resnet18", "-o", tmp_path / "out", "--json",
                   "--outputs", "heatmap", env=environ)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["weights"] == "pretrained (timm/resnet18.a1_in1k, from the cache)"


# --- output for people --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    deep = tmp_path_factory.mktemp("p") / ("a_rather_long_folder_name_" * 4) / "and_another_one_below_it"
    deep.mkdir(parents=True)
    for name in ("cat.png", "dogs.png"):
        (deep / name).write_bytes((SAMPLES / name).read_bytes())
    start = time.perf_counter()
    done = gradcam("explain", deep, "-o", deep.parent / "out", "--outputs", "heatmap")
    return done, deep, time.perf_counter() - start


def test_off_a_terminal_each_record_is_one_whole_line(piped_run):
    done, deep, _ = piped_run
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [row[:4] for row in rows] == [[str(deep / "cat.png"), "gradcam", "bn2", "285 Egyptian cat"],
                                         [str(deep / "dogs.png"), "gradcam", "bn2", "188 wire-haired fox terrier"]]
    assert all(len(row) == 6 and re.fullmatch(r"0\.\d{3}", row[4]) and re.fullmatch(r"(\d+,){3}\d+", row[5])
               for row in rows)


def test_the_summary_reports_wall_time_since_start_and_the_explain_rate(piped_run):
    done, _, outside = piped_run
    summary = done.stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"gradcam: 2 done, 0 skipped, 0 failed of 2; explain phase ([\d.]+) s "
                         r"\(([\d.]+) images/s\); wall time ([\d.]+) s since the process started", summary)
    assert found, summary
    phase, rate, wall = map(float, found.groups())
    assert phase < wall <= outside + 0.2  # start-up counted in the wall time, never more than the process lived
    assert rate == pytest.approx(2 / phase, rel=0.1, abs=0.02)


@pytest.mark.parametrize("command", ["explain", "layers", "methods"])
def test_help_shows_every_default_in_full(command):
    import click

    env = dict(os.environ, COLUMNS="80", TERMINAL_WIDTH="80")
    text = gradcam(command, "--help", env=env).stdout
    assert "…" not in text
    flat = "".join(text.split())
    cmd = app.commands[command]
    ctx = click.Context(cmd, info_name=command)
    for param in cmd.params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        assert "".join(names.split()) in flat, names  # every option's name, whole
        default = re.search(r"\[default: ([^\]]+)\]", help_text)
        if default:
            assert f"[default:{''.join(default.group(1).split())}]" in flat, (param.name, default.group(0))
    assert "[default:heatmap,overlay,guided,bbox]" in flat or command != "explain"
