"""The HTML report: built from an explain run, opened from file:// in headless Chromium (Debian's, driven by
Playwright; never a browser download), checked as a user would use it; and a 2,000-result report's speed."""

import json
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from click.testing import CliRunner

from gradcam_cli.cli import app
from gradcam_cli.output.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
runner = CliRunner()
BAD_NAME = "<img src=x onerror=alert(1)>.jpg"  # a corrupt file whose name is markup: it must show as text


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory, samples):
    """The sample photos and one corrupt file, explained at two layers with sheets and --report."""
    root = tmp_path_factory.mktemp("report")
    photos = root / "photos"
    shutil.copytree(samples, photos, ignore=shutil.ignore_patterns("*.md"))
    (photos / BAD_NAME).write_text("not a picture")
    out = root / "out"
    result = invoke("explain", photos, "-o", out, "--layer", "blocks.4", "--layer", "bn2", "--sheet", "--report")
    assert result.exit_code == 1, result.output  # one image failed; the others were explained
    assert "gradcam: report" in result.stderr and (out / "index.html").is_file()
    return out


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser, index: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


LOAD_ALL_IMAGES = """async (selector) => {
  const images = [...document.querySelectorAll(selector)];
  for (const img of images) {
    img.loading = "eager";
    img.scrollIntoView();
    try { await img.decode(); } catch (e) { }
  }
  return images.map((img) => [img.getAttribute("src"), img.naturalWidth]);
}"""


def _rows(page):
    return page.eval_on_selector_all("#table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def test_report_in_a_real_browser(sample_report, browser, tmp_path):
    records = [json.loads(line) for line in (sample_report / "results.jsonl").read_text().splitlines()]
    assert len(records) == 8 * 2 + 1
    page, requests, errors = _open(browser, sample_report / "index.html")
    rows = _rows(page)
    assert len(rows) == 17
    # Every thumbnail loads (lazy ones are scrolled into view first).
    thumbs = page.evaluate(LOAD_ALL_IMAGES, "#table img")
    assert len(thumbs) == 16 and all(width > 0 for _, width in thumbs), thumbs
    # Sorting by probability reorders the rows: largest first, then smallest first.
    before = [r[1] for r in rows]
    page.click("th[data-key=prob]")
    probs = [float(r[3]) for r in _rows(page) if r[3]]
    assert probs == sorted(probs, reverse=True) and [r[1] for r in _rows(page)] != before
    page.click("th[data-key=prob]")
    probs = [float(r[3]) for r in _rows(page) if r[3]]
    assert probs == sorted(probs)
    # The filter hides rows.
    page.fill("#filter", "horses bn2")
    page.wait_for_function("document.querySelectorAll('#table tbody tr').length === 1")
    assert "horses.jpg" in _rows(page)[0][1] and "bn2" == _rows(page)[0][5]
    page.fill("#filter", "")
    page.wait_for_function("document.querySelectorAll('#table tbody tr').length === 17")
    # A failed image shows its error: in the table, in the list at the top, and on its own page; its
    # markup-like name is text, never markup.
    [failed] = [r for r in _rows(page) if r[8]]
    assert BAD_NAME in failed[1] and "not an image file" in failed[8]
    assert BAD_NAME in page.inner_text("#failed") and "not an image file" in page.inner_text("#failed")
    assert page.locator("#failed img").count() == 0 and page.locator("#table img").count() == 16
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)  # the test's artefact
    _check_detail_pages(page, records)
    assert errors == []
    folder = sample_report.resolve().as_uri() + "/"
    assert requests and all(url.startswith(folder) for url in requests), [u for u in requests if not u.startswith(folder)]
    page.close()


def _check_detail_pages(page, records):
    """Every image's page shows all its outputs and its sheet, and every picture loads."""
    inputs = list(dict.fromkeys(r["input"] for r in records))
    for i, source in enumerate(inputs):
        page.evaluate(f"location.hash = '#image-{i}'")
        page.wait_for_function("document.body.classList.contains('detail')")
        assert source in page.inner_text("#detail h2")
        mine = [r for r in records if r["input"] == source]
        if "error" in mine[0]:
            assert mine[0]["error"] in page.inner_text("#detail .error")
            continue
        loaded = page.evaluate(LOAD_ALL_IMAGES, "#detail img")
        expected = {Path(p).name for r in mine for p in r["files"].values()}
        assert {Path(src).name for src, _ in loaded} == expected
        assert all(width > 0 for _, width in loaded), loaded
    page.evaluate("location.hash = '#results'")
    page.wait_for_function("!document.body.classList.contains('detail')")


def _small_photos(folder: Path, samples: Path, count: int) -> None:
    """``count`` different 120x90 photos: small to explain, still larger than a thumbnail (112 px)."""
    folder.mkdir()
    sources = [Image.open(p).convert("RGB") for p in sorted(samples.glob("*.png"))]
    for n in range(count):
        src = sources[n % len(sources)]
        w, h = src.size
        src.crop((n % 5 * 4, n % 3 * 4, w - n % 4 * 4, h - n % 2 * 4)).resize((120, 90)).save(folder / f"p{n:03d}.png")


def test_report_of_2000_results_is_made_and_opens_fast(browser, tmp_path, samples):
    _small_photos(tmp_path / "photos", samples, 40)
    out = tmp_path / "out"
    result = invoke("explain", tmp_path / "photos", "-o", out, "--model", "test_efficientnet", "--no-pretrained",
                    "--layer", "stages", "--top-k", "5", "--method", "gradcam", "--method", "layercam",
                    "--outputs", "overlay", "-b", "8", "--json")
    assert result.exit_code == 0, result.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 40 * 5 * 5 * 2 == 2000
    start = time.perf_counter()
    made = invoke("report", out)
    seconds = time.perf_counter() - start
    assert made.exit_code == 0 and made.stdout.strip() == str(out / "index.html")
    assert "2000 thumbnails made" in made.stderr  # all made here, none reused
    assert seconds < 5.0, f"report of 2,000 results took {seconds:.2f} s"
    page, requests, errors = _open(browser, out / "index.html")
    dcl_ms = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    assert dcl_ms < 2000, f"DOMContentLoaded after {dcl_ms:.0f} ms"
    assert page.inner_text("#shown") == "showing 300 of 2,000"  # rendered a page at a time
    page.click("#more")
    assert len(_rows(page)) == 600
    page.fill("#filter", "p007 layercam blocks.4")
    page.wait_for_function("document.querySelectorAll('#table tbody tr').length === 5")  # five classes
    assert errors == []
    page.close()


def test_report_survives_a_moved_folder_and_shows_the_evaluation(sample_report, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "out"
    shutil.copytree(sample_report, moved)
    samples = Path(__file__).resolve().parents[1] / "sample_images"
    evaluated = CliRunner().invoke(app, ["evaluate", str(samples / "cat.png"), str(samples / "cat_and_dog.png"),
                                         "-a", str(Path(__file__).parent / "data" / "sample_boxes.csv"), "--quiet",
                                         "--method", "gradcam", "--method", "layercam", "-o", str(moved / "evaluation")])
    assert evaluated.exit_code == 0, evaluated.output
    rows = [json.loads(line) for line in (moved / "evaluation" / "evaluation.jsonl").read_text().splitlines()]
    monkeypatch.chdir(tmp_path)  # neither the run's folder nor the new one
    summary = build_report(moved)
    assert (summary.records, summary.failed, summary.images) == (16, 1, 9)
    data = json.loads((moved / "report" / "data.js").read_text().split("=", 1)[1].rstrip(";\n"))
    explained = [r for r in data["rows"] if "err" not in r]
    assert all(set(r["f"]) == {"heatmap", "overlay", "guided", "bbox", "sheet"} for r in explained)
    paths = [Path(path) for r in explained for path in [*r["f"].values(), r["t"]]]
    assert all(not p.is_absolute() and ".." not in p.parts and (moved / p).is_file() for p in paths)
    page = (moved / "index.html").read_text()
    assert "from evaluation/evaluation.jsonl" in page and 'src="evaluation/sweep.png"' in page
    for row in rows:  # one table row per method and layer, with its figures
        assert f"{row['method']} · {row['layer']}" in page
        assert f"<td>{row['maxboxacc']:.4g}</td>" in page and f"<td>{row['pointing_game']:.4g}</td>" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page and BAD_NAME not in page  # escaped by the template
    (moved / "run.json").unlink()  # an older folder: the paths are found from the folder itself
    build_report(moved)
    again = json.loads((moved / "report" / "data.js").read_text().split("=", 1)[1].rstrip(";\n"))
    assert [r.get("f") for r in again["rows"]] == [r.get("f") for r in data["rows"]]
    assert "No run.json in this folder" in (moved / "index.html").read_text()


def test_thumbnails_are_made_once(sample_report, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(sample_report, copy)
    assert build_report(copy).thumbs_made == 0  # the explain run's --report made them
    shutil.rmtree(copy / "report" / "thumbs")
    assert build_report(copy).thumbs_made == 16
    overlay = next(copy.glob("cat_gradcam_bn2_*_overlay.png"))
    future = time.time() + 60
    import os

    os.utime(overlay, (future, future))  # a newer picture: its thumbnail is made again
    assert build_report(copy).thumbs_made == 1


def test_report_of_a_folder_without_results_is_a_usage_error(tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"gradcam: error: {tmp_path}: no results.jsonl here; "
                                     f"run `gradcam explain ... -o {tmp_path}` first")
    assert invoke("report", tmp_path / "missing").exit_code == 2


def test_run_json_records_the_options_and_versions(sample_report):
    run = json.loads((sample_report / "run.json").read_text())
    assert run["model"] == "timm/tf_efficientnet_lite0" and run["layers"] == ["blocks.4", "bn2"]
    assert run["options"]["explain"]["sheet"] is True and "torch" in run["versions"]
    page = (sample_report / "index.html").read_text()
    assert "timm/tf_efficientnet_lite0" in page and f"torch {run['versions']['torch']}" in page


def test_data_file_cannot_close_a_script_tag(tmp_path):
    from gradcam_cli.output.report import _as_script

    text = _as_script({"rows": [{"err": "x</script><script>alert(1)</script>"}]}).decode()
    assert "</script>" not in text and json.loads(text.split("=", 1)[1].rstrip(";\n"))["rows"][0]["err"].startswith("x</")

