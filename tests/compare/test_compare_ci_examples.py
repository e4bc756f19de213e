"""The CI examples that cannot run here (the GitHub Actions and GitLab CI workflows of docs/regression-testing.md,
the console examples there and in the README) are tested as far as they can be: the workflows are valid YAML whose
steps fit together (the JUnit file the compare step writes is the one published, the cached folder is the
baseline), and every ``gradcam`` command in them is accepted by the command it names, its bounds included."""

import re
import shlex

import pytest

from gradcam_cli.cli import app
from gradcam_cli.cli.params import built
from gradcam_cli.comparison.api import parse_compare_bounds
from gradcam_cli.comparison.options import VerdictOptions
from gradcam_cli.comparison.verdict import evaluation_bounds

from helpers import ROOT

PAGE = ROOT / "docs" / "regression-testing.md"


def _workflows() -> tuple[dict, dict]:
    yaml = pytest.importorskip("yaml")
    github, gitlab = (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S))
    return github, gitlab


def _gradcam_calls(lines) -> list[list[str]]:
    """Each ``gradcam ...`` call in shell lines (``a || gradcam ...`` and ``&&`` chains split), as arguments."""
    calls = []
    for line in lines:
        for part in re.split(r"\|\||&&", line):
            words = shlex.split(part, comments=True)  # the README's examples end in comments
            if words and words[0] == "gradcam":
                calls.append(words[1:])
    return calls


def _console_lines(text: str) -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ gradcam ")]


def _accepted(args: list[str]) -> None:
    """``args`` parsed by the command they name (nothing run), and their --fail-under bounds parsed too."""
    name, rest = args[0], args[1:]
    context = app.commands[name].make_context(name, list(rest))
    if name in ("compare", "evaluate"):
        verdict = built(VerdictOptions, context.params)
        if name == "compare":
            parse_compare_bounds(verdict.fail_under, verdict.fail_under_mean)
        else:
            evaluation_bounds(verdict.fail_under, False)


def test_the_workflows_fit_together_and_their_commands_parse():
    github, gitlab = _workflows()
    steps = github["jobs"]["compare"]["steps"]
    github_calls = _gradcam_calls(s["run"] for s in steps if "run" in s)
    restored = next(s for s in steps if s.get("id") == "golden")
    saved = next(s for s in steps if "cache/save" in str(s.get("uses")))  # saved when made, kept if compare fails
    assert saved["with"]["path"] == restored["with"]["path"] and "steps.golden.outputs" in saved["with"]["key"]
    job = gitlab["explanations"]
    assert job["cache"]["when"] == "always"
    gitlab_calls = _gradcam_calls(job["script"])
    for calls, cached, published in (
        (github_calls, next(s for s in steps if s.get("id") == "golden")["with"]["path"], None),
        (gitlab_calls, job["cache"]["paths"][0], job["artifacts"]["reports"]["junit"]),
    ):
        assert [c[0] for c in calls] == ["explain", "explain", "compare"]
        for call in calls:
            _accepted(call)
        compare = calls[-1]
        assert compare[1] == calls[0][calls[0].index("-o") + 1] == cached  # the cached golden maps are the baseline
        assert compare[2] == calls[1][calls[1].index("-o") + 1]
        junit = compare[compare.index("--junit") + 1]
        assert junit == (published or next(s for s in steps if "junit" in str(s.get("uses")))["with"]["report_paths"])


def test_the_console_examples_parse():
    calls = _gradcam_calls(_console_lines(PAGE.read_text()) + _console_lines((ROOT / "README.md").read_text()))
    assert {c[0] for c in calls} >= {"explain", "compare", "evaluate"} and len(calls) >= 8
    for call in calls:
        _accepted(call)


def test_a_wrong_command_is_caught():
    """Not vacuous: a misspelt option or a bad bound fails the check."""
    import click

    with pytest.raises(click.UsageError):
        _accepted(["compare", "golden/", "candidate/", "--fail-undr", "spearman=0.9"])
    from gradcam_cli.errors import UsageError

    with pytest.raises(UsageError):
        _accepted(["compare", "golden/", "candidate/", "--fail-under", "spearmann=0.9"])
