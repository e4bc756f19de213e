"""How fast the HTML report is made and opens, for 2,000 and 10,000 results: ``python benchmarks/report.py``.

The results come from a real ``gradcam explain`` run over small photos (120x90 crops of the samples, larger than a
thumbnail) with timm's ``test_efficientnet`` (random init): every stage, the top 5 classes, Grad-CAM and
LayerCAM, so 50 results per photo. Then, for each size:

- ``gradcam report`` in a fresh process, the first time (every thumbnail made) and again (thumbnails reused);
- the page opened from ``file://`` in headless Chromium (Debian's, through Playwright): DOMContentLoaded and the
  load event, then a sort by probability and a filter, timed in the page.

Options: ``--sizes 2000 10000`` (results), ``--keep DIR`` to keep the folders.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PER_PHOTO = 5 * 5 * 2  # stages x classes x methods


def gradcam(*args: object) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gradcam_cli", *map(str, args)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def small_photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    sources = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.png"))]
    for n in range(count):
        src = sources[n % len(sources)]
        w, h = src.size
        box = (n % 5 * 4, n % 3 * 4, w - n % 4 * 4, h - n % 2 * 4 - n % 7)
        src.crop(box).resize((120, 90)).save(folder / f"p{n:05d}.png")


def open_in_browser(index: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(index.as_uri())
        page.wait_for_load_state("load")
        timing = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                                          return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }""")
        timing["sort"] = page.evaluate("""() => { const t = performance.now();
            document.querySelector('th[data-key=prob]').click(); return performance.now() - t; }""")
        timing["filter"] = page.evaluate("""() => new Promise(done => {
            const body = document.querySelector('#table tbody'), box = document.getElementById('filter');
            let t = 0;
            new MutationObserver((_, seen) => { seen.disconnect(); done(performance.now() - t - 120); })
                .observe(body, {childList: true});
            t = performance.now(); box.value = 'layercam blocks.4'; box.dispatchEvent(new Event('input')); })""")
        # (less the page's 120 ms pause that waits for typing to stop)
        browser.close()
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="gradcam-report-bench-"))
    rows = []
    for size in args.sizes:
        photos, out = work / f"photos{size}", work / f"out{size}"
        shutil.rmtree(photos, ignore_errors=True), shutil.rmtree(out, ignore_errors=True)
        small_photos(photos, size // PER_PHOTO)
        explain_s = gradcam(
            "explain",
            photos,
            "-o",
            out,
            "--model",
            "test_efficientnet",
            "--no-pretrained",
            "--layer",
            "stages",
            "--top-k",
            "5",
            "--method",
            "gradcam",
            "--method",
            "layercam",
            "--outputs",
            "overlay",
            "-b",
            "8",
            "--json",
        )
        first, again = gradcam("report", out), gradcam("report", out)
        data_kb = next((out / "report").glob("data-*.js")).stat().st_size // 1024
        timing = open_in_browser(out / "index.html")
        rows.append((size, explain_s, first, again, data_kb, timing))
    print(
        "| results | explain run | report, first (thumbnails made) | report, again | data.js | "
        "DOMContentLoaded | load | sort by probability | filter |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, explain_s, first, again, data_kb, t in rows:
        print(
            f"| {size:,} | {explain_s:.0f} s | {first:.2f} s | {again:.2f} s | {data_kb:,} KB | {t['dcl']:.0f} ms | "
            f"{t['load']:.0f} ms | {t['sort']:.0f} ms | {t['filter']:.0f} ms |"
        )
    print("(report times include the process start, about 1 s of imports)")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
