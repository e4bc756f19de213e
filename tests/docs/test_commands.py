"""The documentation is true to the tool: every ```bash command of the README, the docs site (in its navigation's
order) and CONTRIBUTING.md runs, in order, in a fresh copy of the repository; the site builds with --strict; the
README stays short."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

# Set-up lines: the virtual environment this suite runs in is already there.
SETUP = re.compile(
    r"^(python3 -m venv|\.venv/bin/pip |pip install|source \.venv/bin/activate|\.venv/bin/python -m pytest)"
)


def nav_pages() -> list[Path]:
    """The docs pages in the order the site's navigation lists them."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return [ROOT / "docs" / name for name in re.findall(r":\s*([\w./-]+\.md)\s*$", nav, flags=re.M)]


def bash_commands(path: Path) -> list[str]:
    """The commands of a page's ```bash blocks (continued lines joined), in order."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                found.append(line)
    return found


def runnable(command: str) -> str | None:
    """The part of a command that is not set-up (``python3 -m venv ... && .venv/bin/gradcam ...``: the last)."""
    parts = [p.strip() for p in command.split("&&")]
    kept = [p for p in parts if not SETUP.match(p)]
    return " && ".join(kept).replace(".venv/bin/gradcam", "gradcam") or None


def fresh_copy(target: Path) -> Path:
    """The repository's tracked files (a fresh clone's), copied to ``target``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


# A command the server can run (`command_server.py`): `gradcam` and its arguments, no shell syntax to interpret,
# and no Ray (whose processes it starts are better started from a process that has never forked).
PLAIN = re.compile(r"^gradcam(\s[^|&;<>()$`*?\\\[\]{}~!]*)?$")


class CommandServer:
    """`command_server.py` in a process of its own: each plain ``gradcam`` command forked from it."""

    def __init__(self, env: dict, scratch: Path) -> None:
        server = Path(__file__).with_name("command_server.py")
        self.scratch = scratch
        self.process = subprocess.Popen(
            [sys.executable, str(server)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert json.loads(self.process.stdout.readline()) == {"ready": True}

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        out, err = self.scratch / "stdout", self.scratch / "stderr"
        request = {"argv": argv, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        code = json.loads(self.process.stdout.readline())["returncode"]
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def run_command(command: str, clone: Path, env: dict, server: CommandServer) -> subprocess.CompletedProcess:
    """A documented command as a user runs it: plain ``gradcam`` commands in a process forked from the server,
    anything else by bash."""
    if PLAIN.match(command) and "--engine ray" not in command:
        return server.run(shlex.split(command)[1:], clone)
    return subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to make a fresh copy")
def test_every_documented_command_runs_in_order_on_a_fresh_clone(tmp_path) -> None:
    """Each command is its own process, with the environment a user's shell gives it. Plain ``gradcam`` commands
    are forked from a process that has imported torch, torchvision and timm (`command_server.py`): the same
    command, without the 3 to 4 s of imports each of some sixty would cost."""
    clone = fresh_copy(tmp_path / "clone")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    pages = [ROOT / "README.md", *nav_pages(), ROOT / "CONTRIBUTING.md"]
    ran = forked = 0
    server = CommandServer(env, tmp_path)
    try:
        for page in pages:
            for command in filter(None, map(runnable, bash_commands(page))):
                done = run_command(command, clone, env, server)
                assert done.returncode == 0, f"{page.name}: {command}\n{done.stderr[-2000:]}"
                assert "Traceback" not in done.stderr, f"{page.name}: {command}\n{done.stderr[-2000:]}"
                ran += 1
                forked += PLAIN.match(command) is not None and "--engine ray" not in command
    finally:
        server.close()
    assert ran >= 15 and 0 < forked < ran  # both ways are taken


def test_the_documentation_site_builds_strictly(tmp_path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, 'mkdocs is not installed: pip install -e ".[docs]"'
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in nav_pages():
        name = page.stem
        assert ("index.html" if name == "index" else f"{name}/index.html") in built, name
    assert len(nav_pages()) == len(list((ROOT / "docs").glob("*.md")))  # every page is in the navigation


def test_shell_lines_in_the_docs_parse() -> None:
    for page in [ROOT / "README.md", *nav_pages(), ROOT / "CONTRIBUTING.md"]:
        for command in bash_commands(page):
            shlex.split(command)  # a quoting slip would fail here, before any run
