"""Remake the README's pictures from the sample photos with the tool itself: ``python docs/make_figures.py``.

- ``docs/sheet.png``: ``gradcam explain sample_images/cat_and_dog.png --class 243 --layer stages --outputs guided
  --sheet``: the bull mastiff's Grad-CAM at each stage of the bundled EfficientNet-Lite0, and Guided Grad-CAM.
- ``docs/report.png``: the report of ``gradcam explain`` over the sample photos and one corrupt file
  (``--sheet --report``), screenshotted in headless Chromium (Debian's, through Playwright).

Both are re-encoded with a 256-colour palette so the repository stays small; the tool's own files are
full-colour PNGs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"


def gradcam(*args: object, cwd: Path = ROOT) -> None:
    command = [sys.executable, "-m", "gradcam_cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode not in (0, 1):  # 1: the corrupt file failed, as intended
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")


def save_small(source: Path, target: Path) -> None:
    """A dithered 256-colour PNG: a few hundred KB instead of a few MB, and the colour bar stays smooth."""
    with Image.open(source) as image:
        rgb = image.convert("RGB")
        palette = rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(target, optimize=True)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KB")


def make_sheet(work: Path) -> None:
    out = work / "sheet"
    gradcam(
        "explain",
        "sample_images/cat_and_dog.png",
        "--class",
        "243",
        "--layer",
        "stages",
        "--outputs",
        "guided",
        "--sheet",
        "-o",
        out,
    )
    save_small(out / "cat_and_dog_sheet_c243.png", DOCS / "sheet.png")


def make_report(work: Path) -> None:
    photos = work / "photos"
    shutil.copytree(ROOT / "sample_images", photos, ignore=shutil.ignore_patterns("*.md"))
    (photos / "broken.jpg").write_text("not a picture")
    out = work / "report"
    gradcam(
        "explain",
        "photos",
        "-o",
        "report",
        "--layer",
        "blocks.4",
        "--layer",
        "bn2",
        "--sheet",
        "--report",
        "-q",
        cwd=work,
    )  # relative paths, as a user would type them
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto((out / "index.html").as_uri())
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = false)")  # the run, folded
        page.click("th[data-key=prob]")  # most confident first
        page.evaluate("""async () => { for (const img of document.images) { img.loading = 'eager';
                                       try { await img.decode(); } catch (e) {} } }""")
        shot = work / "report.png"
        page.screenshot(path=str(shot))
        browser.close()
    save_small(shot, DOCS / "report.png")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gradcam-figures-") as tmp:
        make_sheet(Path(tmp))
        make_report(Path(tmp))


if __name__ == "__main__":
    main()
