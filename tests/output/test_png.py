"""PNG encoding: lossless with fpng and with the OpenCV fallback, and bad arrays refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.output import encode as outputs

from helpers import SAMPLES


def _images() -> dict[str, np.ndarray]:
    photo = np.asarray(Image.open(SAMPLES / "cat.png").convert("RGB"))
    rng = np.random.default_rng(0)
    return {
        "photo": photo,
        "flipped view": photo[:, ::-1],  # negative stride: no copy made by the caller
        "every other row": photo[::2],
        "noise": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        "one pixel": np.array([[[255, 0, 7]]], dtype=np.uint8),
    }


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("photographic", [False, True])
@pytest.mark.parametrize("name", list(_images()))
def test_png_round_trips_exactly(name: str, photographic: bool) -> None:
    rgb = _images()[name]
    assert np.array_equal(_decode(outputs.encode_png(rgb, photographic)), rgb)


@pytest.mark.parametrize("name", ["photo", "flipped view", "noise"])
def test_opencv_fallback_round_trips_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = _images()[name]
    monkeypatch.setattr(outputs, "_fpng", None)
    for photographic in (False, True):
        assert np.array_equal(_decode(outputs.encode_png(rgb, photographic)), rgb)


def test_fallback_used_when_fpng_returns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        @staticmethod
        def from_ndarray(_rgb: np.ndarray) -> bytes:
            return b""

    monkeypatch.setattr(outputs, "_fpng", Refusing)
    rgb = _images()["noise"]
    assert np.array_equal(_decode(outputs.encode_png(rgb)), rgb)


def test_fpng_is_the_encoder_in_use() -> None:
    """The speed figures in the README assume fpng; a broken install must not fall back silently here."""
    assert outputs._fpng is not None


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_bad_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        outputs.encode_png(bad)
