"""Verdicts: bounds parsed and judged, the exit codes, JUnit XML valid against the schema with the failures counted
(for compare and for evaluate), and the Python API."""

import subprocess
import sys

import pytest
import xmlschema

from gradcam_cli.comparison.junit import compare_junit, evaluate_junit
from gradcam_cli.comparison.pairs import Collector, Pair, Unpaired
from gradcam_cli.comparison.result import CompareResult
from gradcam_cli.comparison.verdict import Bound, evaluation_bounds, parse_bounds
from gradcam_cli.errors import UsageError

from helpers import ROOT, SAMPLES, run

SCHEMA = xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd")
METRICS = ("spearman", "ssim", "box_iou")


def test_bounds_parse_from_repeated_flags_and_comma_lists():
    bounds = parse_bounds(["spearman=0.9,ssim=0.8", " box_iou = 0.5 "], METRICS)
    assert bounds == (Bound("spearman", 0.9), Bound("ssim", 0.8), Bound("box_iou", 0.5))
    with pytest.raises(UsageError, match="expected METRIC=VALUE"):
        parse_bounds(["=0.9"], METRICS)
    with pytest.raises(UsageError, match="spearman is one number"):
        parse_bounds(["spearman@0.5=0.9"], METRICS)


def test_evaluation_bounds_read_dict_metrics_at_an_iou():
    assert evaluation_bounds(["top1_loc=0.5", "top1_loc@0.7=0.2", "pointing_game=0.9"], False) == (
        Bound("top1_loc", 0.5, "0.5"),
        Bound("top1_loc", 0.2, "0.7"),
        Bound("pointing_game", 0.9),
    )
    for text, message in [
        ("top1_loc@0.6=0.1", "measured at IoU 0.3, 0.5, 0.7, not at 0.6"),
        ("deletion_auc=0.2", "lower deletion_auc is better"),
        ("road=0.1", "measured only with --faithfulness"),
    ]:
        with pytest.raises(UsageError, match=message):
            evaluation_bounds([text], False)


def _pair(name: str, spearman: float | None) -> Pair:
    metrics = {"spearman": spearman, "ssim": 0.9, "box_iou": None}
    return Pair(name, "gradcam", "layer4", "top-1", "layer4", (1, "a"), (1, "a"), metrics)


def _result(spearmans, bounds=(), mean_bounds=(), unpaired=()) -> CompareResult:
    collector = Collector(bounds, keep=0)
    for i, value in enumerate(spearmans):
        collector.add(_pair(f"photo{i}.png", value), None)
    pairs, _ = collector.finished()
    return CompareResult({}, {}, pairs, list(unpaired), bounds=tuple(bounds), mean_bounds=tuple(mean_bounds))


def test_pairs_are_judged_worst_first_and_unmeasured_metrics_are_not_judged():
    result = _result([0.95, 0.2, 0.6, None], bounds=[Bound("spearman", 0.9), Bound("box_iou", 0.5)])
    assert [p.input for p in result.failed_pairs] == ["photo1.png", "photo2.png"]
    assert result.failure_lines()[0] == "photo1.png gradcam layer4 top-1: spearman 0.2 < 0.9"
    assert result.exit_code == 1 and not result.passed
    assert _result([0.95, 0.91], bounds=[Bound("spearman", 0.9)]).exit_code == 0
    assert _result([0.95, 0.2]).exit_code == 0  # nothing judged
    mean = _result([1.0, 0.7], mean_bounds=[Bound("spearman", 0.9)])
    assert (
        not mean.failed_pairs
        and mean.exit_code == 1
        and "mean over 2 pairs: spearman 0.85 < 0.9" in mean.failure_lines()
    )


def test_the_junit_report_validates_and_counts_failures_missing_and_skipped():
    missing = Unpaired("gone.png", "gradcam", "layer4", "top-1", "baseline", "not in the candidate")
    extra = Unpaired("new.png", "gradcam", "layer4", "top-1", "candidate", "not in the baseline")
    result = _result(
        [0.95, 0.2, 0.6], bounds=[Bound("spearman", 0.9)], mean_bounds=[Bound("ssim", 0.95)], unpaired=[missing, extra]
    )
    document = compare_junit(result, 1.5)
    SCHEMA.validate(document.decode())
    suite = SCHEMA.to_dict(document.decode())["testsuite"][0]
    # 3 pairs, 1 missing and 1 extra explanation, 1 mean bound; failing: 2 pairs, the missing one, the mean
    assert (suite["@tests"], suite["@failures"], suite["@skipped"], suite["@errors"]) == (6, 4, 1, 0)
    failures = {c["@classname"]: c["failure"] for c in suite["testcase"] if "failure" in c}
    assert failures["photo1.png"]["@message"] == "spearman 0.2 < 0.9"
    assert failures["gone.png"]["@type"] == "missing" and failures["mean"]["@message"] == "mean ssim 0.9 < 0.95"


def test_an_invalid_report_is_caught_by_the_schema():
    """The schema is not vacuous: a suite without its counts, or a failure without a message, is refused."""
    document = compare_junit(_result([0.2], bounds=[Bound("spearman", 0.9)])).decode()
    for broken in (document.replace(' failures="1"', "", 2), document.replace(' message="spearman 0.2 &lt; 0.9"', "")):
        assert not SCHEMA.is_valid(broken)


def test_evaluate_fails_under_a_bound_and_writes_junit(tmp_path):
    args = ["evaluate", SAMPLES, "-a", ROOT / "tests" / "data" / "sample_boxes.csv", "--overwrite"]
    junit = tmp_path / "evaluate.xml"
    done = run(*args, "-o", tmp_path / "e", "--fail-under", "pointing_game=0.5,top1_loc@0.7=0.99", "--junit", junit)
    assert done.exit_code == 1, done.output
    assert "gradcam: FAIL gradcam bn2: top1_loc@0.7 " in done.stderr and "pointing_game" not in done.stderr
    SCHEMA.validate(str(junit))
    suite = SCHEMA.to_dict(str(junit))["testsuite"][0]
    assert (suite["@tests"], suite["@failures"]) == (2, 1)
    assert [c["@name"] for c in suite["testcase"] if "failure" in c] == ["top1_loc@0.7"]
    passing = run(*args, "-o", tmp_path / "e2", "--fail-under", "pointing_game=0.5")
    assert passing.exit_code == 0, passing.output
    assert run(*args, "-o", tmp_path / "e3", "--fail-under", "pointing=0.5").exit_code == 2


def test_evaluate_junit_has_a_case_per_method_layer_and_metric():
    summaries = [
        {"method": "gradcam", "layer": "bn2", "pointing_game": 0.8, "top1_loc": {"0.5": 0.4}},
        {"method": "layercam", "layer": "bn2", "pointing_game": 0.95, "top1_loc": {"0.5": 0.6}},
    ]
    bounds = evaluation_bounds(["pointing_game=0.9", "top1_loc=0.5"], False)
    suite = SCHEMA.to_dict(evaluate_junit(summaries, bounds).decode())["testsuite"][0]
    assert (suite["@tests"], suite["@failures"]) == (4, 2)


def test_the_python_api_is_exported_lazily():
    code = (
        "import sys, gradcam_cli; assert 'gradcam_cli.comparison' not in sys.modules; "
        "from gradcam_cli import compare, CompareResult; "
        "assert compare.__module__ == 'gradcam_cli.comparison.api' and callable(compare); print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_evaluate_failures_are_listed_worst_first():
    """Rows below a bound, by their worst margin (a value not measured is the worst); passing rows left out."""
    from gradcam_cli.comparison.verdict import evaluation_failures

    summaries = [
        {"method": "gradcam", "layer": "bn2", "pointing_game": 0.85, "top1_loc": {"0.5": 0.6}},  # -0.05
        {"method": "layercam", "layer": "bn2", "pointing_game": 0.95, "top1_loc": {"0.5": 0.7}},  # passes
        {"method": "eigencam", "layer": "bn2", "pointing_game": 0.5, "top1_loc": {"0.5": 0.55}},  # -0.4
        {"method": "hirescam", "layer": "bn2", "pointing_game": 0.95, "top1_loc": {"0.7": 0.9}},  # @0.5 missing
    ]
    bounds = evaluation_bounds(["pointing_game=0.9", "top1_loc=0.5"], False)
    failing = evaluation_failures(summaries, bounds)
    assert [row["method"] for row, _ in failing] == ["hirescam", "eigencam", "gradcam"]
    assert [str(f) for f in failing[0][1]] == ["top1_loc@0.5 not measured < 0.5"]
    assert [str(f) for f in failing[1][1]] == ["pointing_game 0.5 < 0.9"]
