"""A comparison of two folders runs no model, so it computes without torch: its rank correlation, its crop geometry
and its pictures equal the torch-side code they stand in for (scipy's ranks and the sanity check's Spearman,
``maps.preprocess.geometry_for``, ``output.render.colorize``), and ``gradcam compare`` on two folders never
imports torch."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import rankdata

from gradcam_cli.comparison.metrics import average_ranks, map_spearman, map_ssim
from gradcam_cli.comparison.outputs import DIFFERENCE_COLORMAP, MAP_COLORMAP, render_pictures
from gradcam_cli.comparison.pairs import Collector, Pair, Thumbs, measure_pair
from gradcam_cli.comparison.runs import Entry, center_crop_in_photo, seen_box
from gradcam_cli.comparison.verdict import Bound
from gradcam_cli.maps.preprocess import PreprocessConfig, geometry_for
from gradcam_cli.metrics.sanity import spearman as sanity_spearman
from gradcam_cli.metrics.sanity import ssim as sanity_ssim
from gradcam_cli.output.render import colorize

from helpers import ROOT, SAMPLES, run


def test_average_ranks_equal_scipy_s_with_ties():
    rng = np.random.default_rng(0)
    for values in (
        rng.integers(0, 7, (23, 31)).astype(np.float32),  # mostly ties
        rng.random((19, 17), dtype=np.float32),  # none
        np.zeros((4, 4), np.float32),  # all one tie
    ):
        # Average ranks are halves of integers below 2**24: exact in float64 on both sides.
        assert np.array_equal(average_ranks(values), rankdata(values.ravel(), method="average"))


def test_spearman_equals_the_sanity_check_s_including_constant_maps():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 50, (30, 40)).astype(np.float32) / 49  # many ties, as quantised maps have
    b = np.clip(a + rng.normal(0, 0.2, a.shape).astype(np.float32), 0, 1)
    # Pearson of the same exact ranks: float64 sums of 1,200 terms in another order (scipy's), far below 1e-12.
    assert map_spearman(a, b) == pytest.approx(sanity_spearman(a, b), abs=1e-12)
    constant = np.full_like(a, 0.3)
    assert map_spearman(constant, b) == sanity_spearman(constant, b) == 0.0
    assert map_spearman(b, np.zeros_like(b)) == sanity_spearman(b, np.zeros_like(b)) == 0.0


@pytest.mark.parametrize("shape", [(7, 7), (7, 30), (37, 53), (104, 126)])
def test_ssim_equals_scikit_image_s(shape):
    """OpenCV's box filter in float64 against scikit-image's (scipy's uniform filter, through the sanity check):
    the same sums in another order, on values in [0, 1] with SSIM's constants keeping the ratio's denominator
    above 1e-8, agree far within 1e-12."""
    rng = np.random.default_rng(shape[0] * shape[1])
    for noise in (0.02, 0.3, 1.0):
        a = rng.random(shape, dtype=np.float32)
        b = np.clip(a + rng.normal(0, noise, shape).astype(np.float32), 0, 1)
        a[: shape[0] // 3] = 0.0  # a flat region, where the variances are zero
        assert map_ssim(a, b) == pytest.approx(sanity_ssim(a, b), abs=1e-12)
    assert map_ssim(np.zeros(shape, np.float32), np.ones(shape, np.float32)) == pytest.approx(
        sanity_ssim(np.zeros(shape), np.ones(shape)), abs=1e-12
    )


def test_only_the_worst_pairs_small_maps_are_made_and_they_are_the_worst():
    """The collector asks for small maps only for pairs that may be among the `keep` worst; in any order of
    arrival the kept pairs are the worst `keep` of all, each with its own maps."""
    rng = np.random.default_rng(3)
    base = rng.random((24, 24), dtype=np.float32)
    items = []
    for i in range(60):
        other = np.clip(base + rng.normal(0, 0.05 + i / 60, base.shape).astype(np.float32), 0, 1)
        record = {"bbox": None, "class_index": 1, "probability": 0.5}
        items.append(
            ((f"p{i:02d}.png", "gradcam", "l", "top-1"), Entry(record, array=base), Entry(record, array=other))
        )
    for order in (items, items[::-1], [items[i] for i in rng.permutation(len(items))]):
        collector, made = Collector([Bound("spearman", 0.5)], keep=5), []

        def wanted(pair, collector=collector, made=made):
            made.append(collector.wants_thumbs(pair))
            return made[-1]

        for key, first, second in order:
            collector.add(*measure_pair(key, first, second, "l", wanted))
        pairs, worst = collector.finished()
        assert [p.input for p, _ in worst] == [p.input for p in pairs[:5]]
        assert sum(made) < len(items)  # not every pair's
        for pair, thumbs in worst:
            second = dict((k[0], s) for k, _, s in items)[pair.input].array
            assert np.array_equal(thumbs.candidate, np.rint(second * 255).astype(np.uint8))


@pytest.mark.parametrize("resize", [256, 232, (256, 300)])
def test_the_crop_geometry_equals_the_preprocessing_s(resize):
    config = PreprocessConfig(input_size=(224, 224), resize=resize)
    sizes = [(w, h) for w in (1, 7, 100, 223, 224, 256, 257, 640, 1001) for h in (1, 13, 224, 255, 480, 3000)]
    for width, height in sizes:
        expected = geometry_for(width, height, config, "crop").crop_box_in_original()
        assert center_crop_in_photo(width, height, (224, 224), resize) == expected, (width, height)
    info = {"view": "crop", "preprocess": {"input_size": [224, 224], "resize": 256}}
    # 640x480 resized to 341x256, cropped at (58, 16): in the photo (108.9, 30, 529.3, 450), every pixel touched
    assert seen_box([640, 480], info) == (108, 30, 530, 450)
    assert seen_box([640, 480], {**info, "view": "full"}) is None


def test_the_pictures_are_the_heatmaps_colours():
    rng = np.random.default_rng(2)
    thumbs = Thumbs(*(rng.integers(0, 256, (9, 13), dtype=np.uint8) for _ in range(3)))
    pair = Pair("a/cat.png", "gradcam", "layer4", "top-1", "layer4", (1, "a"), (1, "a"), {})
    pictures, shown = render_pictures([(pair, thumbs)])
    import cv2

    for kind, colormap in (
        ("baseline", MAP_COLORMAP),
        ("candidate", MAP_COLORMAP),
        ("difference", DIFFERENCE_COLORMAP),
    ):
        name = shown[0]["files"][kind].split("/", 1)[1]
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(pictures[name], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        levels = getattr(thumbs, kind)
        assert np.array_equal(rgb, colorize(levels.astype(np.float32) / np.float32(255.0), colormap)), kind


def test_comparing_two_folders_imports_no_torch(tmp_path):
    done = run(
        "explain", SAMPLES, "-m", "test_resnet", "--no-pretrained", "--save-raw", "--outputs", "heatmap",
        "-o", tmp_path / "a",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    code = (
        "import sys\n"
        "from gradcam_cli.cli import main\n"
        f"sys.argv = ['gradcam', 'compare', {str(tmp_path / 'a')!r}, {str(tmp_path / 'b')!r}, '--fail-under',"
        f" 'spearman=1', '--report', '--junit', {str(tmp_path / 'c.xml')!r}, '-o', {str(tmp_path / 'c')!r}, '-q']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.splitlines()[-1] == "0 False", done.stdout + done.stderr  # the table, then ours
    assert (tmp_path / "c" / "index.html").is_file() and (tmp_path / "c.xml").is_file()
