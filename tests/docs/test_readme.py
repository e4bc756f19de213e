"""README.md starts with the two set-up commands, stays short, and CI runs the README's test command."""

import re

from helpers import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_is_short_and_starts_with_install_and_test_commands():
    text = (ROOT / "README.md").read_text()
    run_cmd, test_cmd = _commands()
    assert "gradcam explain sample_images/" in run_cmd and "constraints.txt" in run_cmd
    # The Ray engine's tests run too, and the documentation site is built by the suite.
    assert test_cmd.endswith("python -m pytest") and '".[test,ray,docs]"' in test_cmd
    assert text.index(run_cmd) < text.index("\n## ")  # before any section
    assert len(text.splitlines()) <= 300


def test_ci_runs_the_readme_test_command():
    _, test_cmd = _commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_sample_images_are_bundled():
    names = {p.name for p in (ROOT / "sample_images").iterdir()}
    assert {"cat.png", "cat_and_dog.png"} <= names
