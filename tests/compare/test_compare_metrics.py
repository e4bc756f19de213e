"""The comparison's metrics against independent implementations: scipy's Spearman and a hand rank correlation in
float64, scikit-image's SSIM called directly, and IoUs counted by hand in plain Python; the part of the photo a
pair is measured on; resampling."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from gradcam_cli.comparison.metrics import box_iou, map_metrics, record_metrics, same_size, top_region
from gradcam_cli.comparison.pairs import measure_pair
from gradcam_cli.comparison.runs import Entry


def _maps(seed: int, shape=(37, 53)) -> tuple[np.ndarray, np.ndarray]:
    """Two related maps in [0, 1], float32 as the tool writes them, with a block of ties at zero."""
    rng = np.random.default_rng(seed)
    a = rng.random(shape, dtype=np.float32)
    b = np.clip(a + rng.normal(0, 0.3, shape).astype(np.float32), 0, 1)
    a[:5] = 0.0  # ties, as where a map is empty
    return a, b


def _hand_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of average ranks, computed in float64 with plain sorting."""

    def ranks(values: np.ndarray) -> np.ndarray:
        flat = values.ravel().astype(np.float64)
        order = sorted(range(flat.size), key=lambda i: flat[i])
        out = np.empty(flat.size)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and flat[order[end + 1]] == flat[order[start]]:
                end += 1
            for k in range(start, end + 1):
                out[order[k]] = (start + end) / 2.0 + 1.0
            start = end + 1
        return out

    x, y = ranks(a), ranks(b)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))


def _hand_top(values: np.ndarray, percent: float) -> set[tuple[int, int]]:
    """The top-percent region by the documented rule, from a plain sorted list."""
    flat = sorted(values.ravel().tolist(), reverse=True)
    count = max(1, math.ceil(len(flat) * percent / 100))
    cut, low, high = flat[count - 1], flat[-1], flat[0]
    h, w = values.shape
    if cut > low or cut == high:
        return {(y, x) for y in range(h) for x in range(w) if values[y, x] >= cut}
    return {(y, x) for y in range(h) for x in range(w) if values[y, x] > low}


def _hand_iou(a: set, b: set) -> float:
    return 1.0 if not (a | b) else len(a & b) / len(a | b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_metrics_match_independent_implementations(seed):
    a, b = _maps(seed)
    found = map_metrics(a, b)
    # Ranks are exact; the correlation of ranks in float64 agrees to float64 rounding of a sum of ~2,000 terms.
    assert found["spearman"] == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert found["spearman"] == pytest.approx(_hand_spearman(a, b), abs=1e-9)
    expected_ssim = structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=1.0)
    assert found["ssim"] == pytest.approx(expected_ssim, abs=1e-12)
    for k in (10, 25):
        assert found[f"top{k}_iou"] == pytest.approx(_hand_iou(_hand_top(a, k), _hand_top(b, k)), abs=1e-15)
    assert 0.0 < found["spearman"] < 1.0 and 0.0 < found["top10_iou"] < 1.0  # not vacuous


def test_top_region_rules_by_hand():
    sparse = np.zeros((10, 10), np.float32)
    sparse[2, 3], sparse[5, 5] = 0.5, 1.0  # positive on 2% of the map: the floor is not evidence
    assert set(zip(*np.nonzero(top_region(sparse, 10)))) == _hand_top(sparse, 10) == {(2, 3), (5, 5)}
    ties = np.repeat(np.linspace(0, 1, 10, dtype=np.float32)[None], 10, axis=0)
    assert np.count_nonzero(top_region(ties, 25)) == 30  # 25 pixels asked; the whole tied column belongs
    assert top_region(np.full((4, 4), 0.3, np.float32), 10).all()  # a constant map: all of it


def test_identical_maps_are_alike_in_every_metric_even_constant_ones():
    a, _ = _maps(3)
    for m in (a, np.zeros_like(a), np.full_like(a, 0.5)):
        found = map_metrics(m, m.copy())
        assert found == {"spearman": 1.0, "ssim": 1.0, "top10_iou": 1.0, "top25_iou": 1.0}
    assert map_metrics(np.zeros((5, 5), np.float32), np.zeros((5, 5), np.float32))["ssim"] == 1.0
    assert map_metrics(*_maps(4, (5, 6)))["ssim"] is None  # under scikit-image's 7-pixel window


def test_box_iou_and_record_metrics_by_hand():
    def hand(a, b):
        inside = lambda box, x, y: box[0] <= x < box[2] and box[1] <= y < box[3]  # noqa: E731
        pixels = [(x, y) for x in range(60) for y in range(60)]
        both = sum(inside(a, x, y) and inside(b, x, y) for x, y in pixels)
        either = sum(inside(a, x, y) or inside(b, x, y) for x, y in pixels)
        return both / either

    a, b = [3, 4, 40, 30], [10, 0, 55, 25]
    assert box_iou(a, b) == pytest.approx(hand(a, b), abs=1e-15)
    assert box_iou(a, a) == 1.0 and box_iou(a, [41, 31, 50, 50]) == 0.0
    assert box_iou(None, None) is None and box_iou(a, None) == 0.0
    found = record_metrics(
        {"bbox": a, "class_index": 3, "probability": 0.75}, {"bbox": b, "class_index": 5, "probability": 0.5}
    )
    assert found == {"box_iou": pytest.approx(hand(a, b)), "same_class": 0.0, "probability_change": -0.25}


def test_a_pair_is_measured_on_what_either_model_saw():
    """Outside the crops both maps are zero by construction: the metrics are those of the crops' rectangle."""
    a, b = _maps(5, (40, 60))
    a[:, :10] = b[:, :10] = 0.0
    a[:, 50:] = b[:, 50:] = 0.0
    record = {"bbox": None, "class_index": 1, "probability": 0.5}
    first, second = Entry(record, array=a, seen=(10, 0, 48, 40)), Entry(record, array=b, seen=(12, 0, 50, 40))
    pair, thumbs = measure_pair(("x.png", "gradcam", "l", "top-1"), first, second, "l")
    expected = map_metrics(a[:, 10:50], b[:, 10:50])
    assert {k: pair.metrics[k] for k in expected} == expected
    assert pair.metrics["spearman"] != map_metrics(a, b)["spearman"]  # the zero strips would have counted
    assert thumbs.difference.max() > 0 and thumbs.baseline.shape == (40, 60)


def test_maps_of_other_sizes_are_resampled_to_the_baseline_s():
    a = np.outer(np.linspace(0, 1, 30), np.linspace(0, 1, 40)).astype(np.float32)
    big = same_size(a, (60, 80))
    assert big.shape == (60, 80) and same_size(big, (30, 40)).shape == (30, 40)
    record = {"bbox": [0, 0, 40, 30], "class_index": 1, "probability": 0.5}
    pair, _ = measure_pair(("x", "m", "l", "top-1"), Entry(record, array=a), Entry(record, array=big), "l")
    assert "resampled" in pair.note and pair.metrics["spearman"] > 0.99  # a smooth map survives the resampling
