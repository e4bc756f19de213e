"""README.md starts with the two set-up commands, and CI runs the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_readme_starts_with_install_and_test_commands():
    run_cmd, test_cmd = _commands()
    assert "gradcam explain sample_images/" in run_cmd and "constraints.txt" in run_cmd
    assert test_cmd.endswith("python -m pytest") and '".[test,ray]"' in test_cmd  # the Ray engine's tests run too


def test_ci_runs_the_readme_test_command():
    _, test_cmd = _commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_sample_images_are_bundled():
    names = {p.name for p in (ROOT / "sample_images").iterdir()}
    assert {"cat.png", "cat_and_dog.png"} <= names
