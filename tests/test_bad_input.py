"""Bad images, bad requests, untrusted files and write faults: each ends in one clear line or a valid output.

README.md ("What happens when…") lists every case with the test that backs it.
"""

import builtins
import errno
import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from click.testing import CliRunner

from gradcam_cli.cli import app
from gradcam_cli.errors import ImageError, UsageError
from gradcam_cli.io.images import load_rgb
from helpers import BrightnessNet

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def records(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


# --- building the files ------------------------------------------------------------------------------

def _photo(size=(96, 64)) -> Image.Image:
    return Image.open(SAMPLES / "samoyed.png").convert("RGB").resize(size)


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header that declares ``width x height`` RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        _chunk(b"IEND", b"")


def png_with_bad_crc() -> bytes:
    """A complete PNG whose pixel data is intact but whose IDAT checksum is wrong."""
    data = bytearray(_encoded(_photo(), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the CRC after the chunk's data
    return bytes(data)


def make_bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that must each be a one-line error: name -> (path, a word the cause must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = _encoded(_photo(), "JPEG", quality=90)
    png = _encoded(_photo(), "PNG")
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
    photo = _photo()
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


def _deny(monkeypatch, target: Path):
    """Simulate a file without read permission (tests run as root, so chmod 000 would not block reads)."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == os.path.abspath(target):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)  # pathlib opens through io.open


# --- the loader ---------------------------------------------------------------------------------------

BAD = ["zero", "truncated_jpeg", "truncated_jpeg_tail", "truncated_png", "text_as_jpeg", "bad_crc", "bomb",
       "directory", "missing"]


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
    from PIL import ImageFile

    import gradcam_cli.job.explain  # noqa: F401  everything the CLI imports, timm and torchvision included
    import gradcam_cli.explainer  # noqa: F401
    import timm  # noqa: F401
    import torchvision  # noqa: F401

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
    _photo().save(path)
    _deny(monkeypatch, path)
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    assert str(info.value) == f"{path}: permission denied"


def test_loader_permission_denied_by_pillow(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    _photo().save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        load_rgb(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their mode; the patched tests above cover this path")
def test_loader_real_chmod_000(tmp_path):
    path = tmp_path / "locked.jpg"
    _photo().save(path)
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


GOOD = ["1x1", "5000x3", "16bit_gray", "16bit_rgb", "grayscale", "palette_transparency", "rgba", "cmyk",
        "exif6", "exif8", "animated_gif", "multipage_tiff", "name_spaces", "name_unicode", "name_leading_dash"]


@pytest.mark.parametrize("case", GOOD)
def test_loader_reads_odd_but_valid_images(good_files, case):
    path, (width, height) = good_files[case]
    arr = load_rgb(path)
    assert arr.shape == (height, width, 3) and arr.dtype == np.uint8
    photo = np.asarray(_photo(), dtype=np.int16)
    if case == "1x1":
        assert arr[0, 0].tolist() == [200, 10, 10]
    elif case == "5000x3":
        assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255
    elif case in ("16bit_gray", "grayscale"):
        gray = np.asarray(_photo().convert("L"), dtype=np.int16)
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


# --- bad images through the CLI: one line each, the batch goes on ---------------------------------------

def test_batch_of_bad_and_odd_images(tmp_path, bad_files, good_files, monkeypatch):
    locked = bad_files["zero"][0].parent / "locked.jpg"
    _photo().save(locked)
    _deny(monkeypatch, locked)
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


def test_leading_dash_name_after_double_dash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _photo().save(tmp_path / "-x.jpg")
    _photo().save(tmp_path / "a b ü.jpg")
    result = run("explain", "-o", "out", "--json", "--outputs", "heatmap", "--device", "cpu", "--", "-x.jpg",
                 "a b ü.jpg")
    assert result.exit_code == 0, result.output
    assert sorted(r["input"] for r in records(result)) == ["-x.jpg", "a b ü.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(
        f"{stem}_gradcam_bn2_c{r['class_index']}_heatmap.png"
        for stem, r in zip(("-x", "a b ü"), sorted(records(result), key=lambda r: r["input"])))
    without = run("explain", "-o", "out", "-x.jpg")  # without "--" it is an (unknown) option: a usage error
    assert without.exit_code == 2


# --- EXIF: the heatmap lines up with the rotated photo --------------------------------------------------

def _brightness_explainer(outputs):
    from gradcam_cli import Explainer, ExplainOptions
    from gradcam_cli.model.loading import LoadedModel
    from gradcam_cli.maps.preprocess import PreprocessConfig

    loaded = LoadedModel(BrightnessNet().eval(), "timm/brightness",
                         PreprocessConfig((224, 224), 256, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), 2, None,
                         "test")
    return Explainer(loaded, ExplainOptions(outputs=outputs, classes=["0"], bbox_threshold=0.5))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photo_heatmap_and_box_line_up(tmp_path, orientation):
    from gradcam_cli.job.explain import run_explain
    from gradcam_cli.options import JobOptions
    from gradcam_cli.io.inputs import collect_inputs

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
    assert e.map[y0 + 4:y1 - 4, x0 + 4:x1 - 4].mean() > 0.8 and e.map[150:].mean() < 0.05
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


# --- bad requests: exit 2, one line, before any work --------------------------------------------------

@pytest.fixture(scope="module")
def cat():
    return SAMPLES / "cat.png"


def _refuse_access(monkeypatch, target: Path, refused_modes: int):
    """``os.access`` says no for ``target`` when asked for any of ``refused_modes``."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(target) and mode & refused_modes:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _assert_usage_error(result, needle, out: Path | None = None):
    assert result.exit_code == 2, result.output
    assert needle in result.stderr, result.stderr
    assert one_line(result.stderr), result.stderr
    assert result.stderr.startswith("gradcam: error: ")
    assert "Traceback" not in result.output
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), "outputs were written"


def test_output_dir_that_cannot_be_created(tmp_path, cat):
    afile = tmp_path / "regular_file"
    afile.write_text("x")
    _assert_usage_error(run("explain", cat, "-o", afile / "sub"), "--output-dir")
    _assert_usage_error(run("explain", cat, "-o", afile), "--output-dir")
    assert afile.read_text() == "x"


def test_output_dir_that_cannot_be_written(tmp_path, cat, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()
    _refuse_access(monkeypatch, out, os.W_OK)  # chmod 555: readable, not writable (root ignores real modes)
    _assert_usage_error(run("explain", cat, "-o", out), "not a writable directory", out)


@pytest.mark.parametrize("flags,needle", [
    pytest.param(("--model", "resnet5O"), "resnet50", id="unknown-model"),  # the right name among the closest
    pytest.param(("--model", "torchvision/resnet5"), "torchvision/resnet50", id="unknown-torchvision-model"),
    pytest.param(("--layer", "blocks.9"), "blocks.6", id="unknown-layer"),
    pytest.param(("--layer", "classifier"), "no spatial map", id="non-spatial-layer"),  # and says why
    pytest.param(("--class", "-1"), "out of range", id="negative-class"),
    pytest.param(("--device", "tpu"), "not a device", id="bad-device"),
    pytest.param(("-", "-"), "only once", id="stdin-twice"),
    pytest.param(("--workers", "-1"), "--workers", id="negative-workers"),
    pytest.param(("--alpha", "2"), "--alpha", id="alpha-out-of-range"),
    pytest.param(("--bbox-threshold", "0"), "--bbox-threshold", id="bbox-threshold-out-of-range"),
    pytest.param(("--batch-size", "0"), "--batch-size", id="zero-batch"),
    pytest.param(("--top-k", "0"), "--top-k", id="zero-top-k"),
    pytest.param(("--shard", "2"), "I/N", id="bad-shard"),
    pytest.param(("--model", "torchvision/resnet18", "--num-classes", "3"), "--num-classes",
                 id="num-classes-vs-pretrained"),
    pytest.param(("--labels", "/nonexistent/labels.txt"), "--labels", id="missing-labels-file"),
])
def test_more_bad_requests_exit_2_with_one_line(tmp_path, cat, flags, needle):
    out = tmp_path / "out"
    _assert_usage_error(run("explain", cat, "-o", out, *flags, input=""), needle, out)


def test_bad_request_creates_no_output_dir(tmp_path, cat):
    out = tmp_path / "never"
    result = run("explain", cat, "-o", out, "--model", "resnet5O")
    assert result.exit_code == 2
    assert not out.exists()


# --- --weights: missing, unreadable, not fitting, untrusted ---------------------------------------------

@pytest.fixture(scope="module")
def resnet18_state():
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict()


def _explain_with(weights, out, *extra):
    return run("explain", SAMPLES / "cat.png", "-o", out, "--model", "resnet18", "--num-classes", "3",
               "--weights", weights, "--outputs", "heatmap", *extra)


def test_weights_missing_directory_empty_garbage(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pth").write_text("hello, I am not a checkpoint")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    for weights, needle in ((tmp_path / "nope.pt", "no such file"), (tmp_path, "is a directory"),
                            (tmp_path / "empty.pt", "empty file"),
                            (tmp_path / "garbage.pth", "not a readable checkpoint"),
                            (tmp_path / "garbage.safetensors", "not a readable checkpoint")):
        result = _explain_with(weights, out)
        _assert_usage_error(result, f"--weights {weights}: {needle}", out)


def test_weights_permission_denied(tmp_path, resnet18_state, monkeypatch):
    path = tmp_path / "locked.pt"
    torch.save(resnet18_state, path)
    _deny(monkeypatch, path)  # torch.load opens the file with the builtin open
    _assert_usage_error(_explain_with(path, tmp_path / "out"), f"--weights {path}: permission denied", tmp_path / "out")


@pytest.mark.parametrize("option", ["--weights", "--labels", "--output-dir"])
def test_unreadable_path_options_give_one_line(tmp_path, resnet18_state, monkeypatch, option):
    path = tmp_path / ("locked.pt" if option == "--weights" else "labels.txt" if option == "--labels" else "outdir")
    if option == "--weights":
        torch.save(resnet18_state, path)
    elif option == "--labels":
        path.write_text("a\nb\nc\n")
    else:
        path.mkdir()
    _refuse_access(monkeypatch, path, os.R_OK | os.W_OK | os.X_OK)  # what chmod 000 means for a non-root user
    if option != "--output-dir":
        _deny(monkeypatch, path)
    args = ["explain", SAMPLES / "cat.png", "--model", "resnet18", "--no-pretrained", "--num-classes", "3",
            "--outputs", "heatmap"]
    if option != "--output-dir":
        args += ["-o", tmp_path / "out", option, path]
    else:
        args += ["-o", path]
    result = run(*args)
    _assert_usage_error(result, f"{option} {path}: ")
    assert "permission denied" in result.stderr.lower() or "not a writable directory" in result.stderr


def test_weights_that_do_not_fit_list_the_keys(tmp_path, resnet18_state):
    from safetensors.torch import save_file

    out = tmp_path / "out"
    missing = {k: v for k, v in resnet18_state.items() if not k.startswith("layer4.1.")}
    save_file(missing, tmp_path / "missing.safetensors")
    result = _explain_with(tmp_path / "missing.safetensors", out)
    _assert_usage_error(result, "missing keys: layer4.1.conv1.weight", out)
    unexpected = {**resnet18_state, "extra.weight": torch.zeros(3), "head.bias": torch.zeros(2)}
    torch.save({"model": unexpected}, tmp_path / "unexpected.pt")
    result = _explain_with(tmp_path / "unexpected.pt", out)
    _assert_usage_error(result, "unexpected keys: extra.weight, head.bias", out)
    result = run("explain", SAMPLES / "cat.png", "-o", out, "--model", "resnet18", "--weights",
                 tmp_path / "unexpected.pt")  # 3-class head on a 1000-class model
    _assert_usage_error(result, "mis-shaped keys (file != model): fc.weight (3, 512) != (1000, 512)", out)
    assert "--num-classes" in result.stderr


class _RunsShell:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class _WritesFile:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.sentinel)!r}, 'w').write('pwned')",)


class _OpensFile:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return builtins.open, (str(self.sentinel), "w")


@pytest.mark.parametrize("payload,writer,suffix", [
    (_RunsShell, "torch", ".pt"),
    (_WritesFile, "torch", ".pth"),
    (_RunsShell, "pickle", ".pt"),
    (_OpensFile, "pickle", ".pth"),
    (_WritesFile, "pickle", ".bin"),
])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, resnet18_state, monkeypatch, payload, writer, suffix):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not switch the safe loader off
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / f"evil{suffix}"
    obj = {**resnet18_state, "fc.bias": payload(sentinel)}
    if writer == "torch":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=4)
    out = tmp_path / "out"
    result = _explain_with(path, out)
    _assert_usage_error(result, f"--weights {path}: refused to load", out)
    assert "could run code" in result.stderr
    assert not sentinel.exists(), "the pickle's code ran"


def test_whole_model_pickle_is_refused_with_the_fix(tmp_path):
    import timm

    from gradcam_cli.model.weights import read_state_dict

    path = tmp_path / "model.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3), path)
    with pytest.raises(UsageError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "timm.models.resnet.ResNet" in message and "state_dict" in message and one_line(message)
    assert "\x1b" not in message


def test_non_string_keys_are_not_a_state_dict(tmp_path):
    from gradcam_cli.model.weights import read_state_dict

    torch.save({0: torch.zeros(1), 1: torch.ones(1)}, tmp_path / "ints.pt")
    with pytest.raises(UsageError, match="no state_dict of tensors"):
        read_state_dict(tmp_path / "ints.pt")


# --- no input name can write outside --output-dir -------------------------------------------------------

def test_stdin_paths_with_dotdot_and_absolute_paths_stay_inside_output_dir(tmp_path, monkeypatch):
    cwd = tmp_path / "a" / "b"
    (cwd / "sub").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    photo = _photo((48, 32))
    for p in (tmp_path / "top.jpg", tmp_path / "a" / "mid.jpg", tmp_path / "elsewhere" / "abs.jpg",
              cwd / "sub" / "here.jpg"):
        p.parent.mkdir(parents=True, exist_ok=True)
        photo.save(p)
    listed = ["sub/../../../top.jpg", "../mid.jpg", str(tmp_path / "elsewhere" / "abs.jpg"),
              "/../../" + str(tmp_path / "elsewhere" / "abs.jpg").lstrip("/"), "./sub/here.jpg",
              "sub/./../sub/here.jpg"]
    out = cwd / "out"
    result = run("explain", "-", "-o", "out", "--json", "--outputs", "heatmap,bbox", "--save-raw", "--device", "cpu",
                 input="\n".join(listed) + "\n")
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".png", ".npy", ".jsonl")
               and p.parent != tmp_path / "elsewhere"]
    assert len(written) == 4 * 3 + 1  # 4 distinct images x (heatmap, bbox, map) + results.jsonl
    root = out.resolve()
    for p in written:
        assert p.resolve().is_relative_to(root), p
    for r in records(result):
        for f in r["files"].values():
            assert Path(f).resolve().is_relative_to(root)


SEGMENTS = st.sampled_from(["..", ".", "", "a", "b c", "ü", "-x", "C:", "\\", "..\\..", "~"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(SEGMENTS, min_size=1, max_size=8).map(lambda s: "/".join(s) + "/img.jpg"),
                min_size=1, max_size=4), st.booleans())
def test_collected_output_locations_never_climb_out(paths, absolute):
    from gradcam_cli.io.inputs import collect_inputs

    args = ["/" + p if absolute else p for p in paths]
    items = collect_inputs(["-"], stdin=io.BytesIO("\n".join(args).encode()))
    for item in items:
        assert not item.rel.is_absolute() and ".." not in item.rel.parts, item
        joined = os.path.normpath(os.path.join("/out", str(item.rel)))
        assert joined.startswith("/out/"), (item, joined)
        assert isinstance(item.rel, PurePosixPath)


# --- faults while writing -------------------------------------------------------------------------------

@pytest.fixture
def three_photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _photo((64, 48)).save(folder / name)
    return folder


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.mark.parametrize("fault", ["disk_full_on_rename", "permission_lost_on_write"])
def test_write_fault_fails_one_image_and_leaves_no_partial_files(tmp_path, three_photos, monkeypatch, fault):
    import gradcam_cli.output.files as outputs

    if fault == "disk_full_on_rename":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name.startswith("b_") and Path(dst).name.endswith("_bbox.png"):  # b's 2nd file
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        cause = "No space left on device"
    else:
        real_write = outputs.write_bytes_atomic

        def write(path, data):
            if Path(path).name.startswith("b_"):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_write(path, data)

        monkeypatch.setattr(outputs, "write_bytes_atomic", write)
        cause = "Permission denied"
    out = tmp_path / "out"
    result = run("explain", three_photos, "-o", out, "--json", "--outputs", "heatmap,bbox", "-b", "1",
                 "--device", "cpu")
    assert result.exit_code == 1, result.output
    recs = records(result)
    [err] = [r for r in recs if "error" in r]
    assert err["input"].endswith("b.jpg") and cause in err["error"] and one_line(err["error"])
    assert err["error"].startswith(err["input"] + ": ")
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith("b_")], names
    assert _leftovers(out) == []
    assert len([n for n in names if n.startswith(("a_", "c_"))]) == 4
    for name in names:
        if name.endswith(".png"):
            with Image.open(out / name) as img:
                img.load()
    manifest = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in manifest) == ["a.jpg", "b.jpg", "c.jpg"]
    assert "Traceback" not in result.output


def test_manifest_write_fault_is_one_line_not_a_traceback(tmp_path, three_photos, monkeypatch):
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "results.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    result = run("explain", three_photos, "-o", out, "--outputs", "heatmap", "--device", "cpu")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "results.jsonl" in result.stderr and "No space left on device" in result.stderr
    # No partial file; the records that could not reach the manifest are kept in its journal, and the
    # next run folds them in: none is lost.
    assert _leftovers(out) == [".results.jsonl.journal"]
    journal = [json.loads(line) for line in (out / ".results.jsonl.journal").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in journal) == ["a.jpg", "b.jpg", "c.jpg"]
    monkeypatch.setattr(os, "replace", real_replace)
    again = run("explain", three_photos, "-o", out, "--outputs", "heatmap", "--device", "cpu", "--skip-existing")
    assert again.exit_code == 0 and "0 done, 3 skipped" in again.stderr, again.stderr
    manifest = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in manifest) == ["a.jpg", "b.jpg", "c.jpg"]
    assert _leftovers(out) == []
