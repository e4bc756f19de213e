"""The HTML report: built from an explain run, opened from file:// in headless Chromium (Debian's, driven by
Playwright; never a browser download), checked as a user would use it; a 2,000-result report's speed; and the
report against hostile file names (script and network URLs, paths that climb out, line separators), a full
disk and symbolic links."""

import errno
import html
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from playwright.sync_api import expect

from gradcam_cli.cli import app
from gradcam_cli.errors import UsageError
from gradcam_cli.report import build as report_module
from gradcam_cli.report import build_report

from helpers import ROOT, open_page, run

CHROMIUM = Path("/usr/bin/chromium")
BAD_NAME = "<img src=x onerror=alert(1)>.jpg"  # a corrupt file whose name is markup: it must show as text
# Every character str.splitlines() splits at; json.dumps(ensure_ascii=False) writes the last three raw.
LINE_BREAKS = ("\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory, samples):
    """The sample photos and one corrupt file, explained at two layers with sheets and --report."""
    root = tmp_path_factory.mktemp("report")
    photos = root / "photos"
    shutil.copytree(samples, photos, ignore=shutil.ignore_patterns("*.md"))
    (photos / BAD_NAME).write_text("not a picture")
    out = root / "out"
    result = run("explain", photos, "-o", out, "--layer", "blocks.4", "--layer", "bn2", "--sheet", "--report")
    assert result.exit_code == 1, result.output  # one image failed; the others were explained
    assert "gradcam: report" in result.stderr and (out / "index.html").is_file()
    return out


def _wait_until(page, expression: str, seconds: float = 10.0) -> None:
    """Poll ``expression`` with page.evaluate. (Playwright's wait_for_function evaluates its predicate with
    eval, which the report's Content-Security-Policy refuses; so the tests wait by selectors, or by this.)"""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {seconds} s: {expression}"
        time.sleep(0.02)


def _records(out: Path, name: str = "results.jsonl") -> list[dict]:
    """The records of a manifest: one per line, lines ended by \\n alone (names may hold other line breaks)."""
    return [json.loads(line) for line in (out / name).read_bytes().decode("utf-8").split("\n") if line.strip()]


def _report_data(out: Path) -> dict:
    """The rows the page loads: from the data script that index.html names."""
    src = re.search(r'<script src="([^"]+)"></script>', (out / "index.html").read_text(encoding="utf-8")).group(1)
    text = (out / unquote(html.unescape(src))).read_text(encoding="utf-8")
    return json.loads(text.split("=", 1)[1].rstrip(";\n"))


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
    records = _records(sample_report)
    assert len(records) == 8 * 2 + 1
    page, requests, errors, dialogs = open_page(browser, sample_report / "index.html")
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
    expect(page.locator("#table tbody tr")).to_have_count(1)
    assert "horses.jpg" in _rows(page)[0][1] and "bn2" == _rows(page)[0][5]
    page.fill("#filter", "")
    expect(page.locator("#table tbody tr")).to_have_count(17)
    # A failed image shows its error: in the table, in the list at the top, and on its own page; its
    # markup-like name is text, never markup.
    [failed] = [r for r in _rows(page) if r[8]]
    assert BAD_NAME in failed[1] and "not an image file" in failed[8]
    assert BAD_NAME in page.inner_text("#failed") and "not an image file" in page.inner_text("#failed")
    assert page.locator("#failed img").count() == 0 and page.locator("#table img").count() == 16
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)  # the test's artefact
    _check_detail_pages(page, records)
    assert errors == [] and dialogs == []
    folder = sample_report.resolve().as_uri() + "/"
    assert requests and all(url.startswith(folder) for url in requests), [
        u for u in requests if not u.startswith(folder)
    ]
    page.close()


def _check_detail_pages(page, records):
    """Every image's page shows all its outputs and its sheet, and every picture loads."""
    inputs = list(dict.fromkeys(r["input"] for r in records))
    for i, source in enumerate(inputs):
        page.evaluate(f"location.hash = '#image-{i}'")
        page.wait_for_selector("body.detail")
        assert source in page.inner_text("#detail h2")
        mine = [r for r in records if r["input"] == source]
        if "error" in mine[0]:
            assert mine[0]["error"] in page.inner_text("#detail .error")
            continue
        loaded = page.evaluate(LOAD_ALL_IMAGES, "#detail img")
        expected = {Path(p).name for r in mine for p in r["files"].values()}
        assert {Path(unquote(src)).name for src, _ in loaded} == expected
        assert all(width > 0 for _, width in loaded), loaded
        # A sheet is shown at its own size (up to the page's width), readable without a click.
        for natural_w, natural_h, shown_w, shown_h in page.eval_on_selector_all(
            "#detail .sheet img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight, i.width, i.height])"
        ):
            assert shown_h == round(natural_h * min(1.0, shown_w / natural_w)) and shown_w >= min(natural_w, 1000)
    page.evaluate("location.hash = '#results'")
    page.wait_for_selector("body:not(.detail)")


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
    result = run(
        "explain",
        tmp_path / "photos",
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
    assert result.exit_code == 0, result.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 40 * 5 * 5 * 2 == 2000
    start = time.perf_counter()
    made = run("report", out)
    seconds = time.perf_counter() - start
    assert made.exit_code == 0 and made.stdout.strip() == str(out / "index.html")
    assert "2000 thumbnails made" in made.stderr  # all made here, none reused
    assert seconds < 5.0, f"report of 2,000 results took {seconds:.2f} s"
    page, _, errors, dialogs = open_page(browser, out / "index.html")
    dcl_ms = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    assert dcl_ms < 2000, f"DOMContentLoaded after {dcl_ms:.0f} ms"
    assert page.inner_text("#shown") == "showing 300 of 2,000"  # rendered a page at a time
    page.click("#more")
    assert len(_rows(page)) == 600
    page.fill("#filter", "p007 layercam blocks.4")
    expect(page.locator("#table tbody tr")).to_have_count(5)  # five classes
    assert errors == [] and dialogs == []
    page.close()


def test_report_survives_a_moved_folder_and_shows_the_evaluation(sample_report, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "out"
    shutil.copytree(sample_report, moved)
    samples = ROOT / "sample_images"
    evaluated = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(samples / "cat.png"),
            str(samples / "cat_and_dog.png"),
            "-a",
            str(ROOT / "tests" / "data" / "sample_boxes.csv"),
            "--quiet",
            "--method",
            "gradcam",
            "--method",
            "layercam",
            "-o",
            str(moved / "evaluation"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    rows = _records(moved / "evaluation", "evaluation.jsonl")
    monkeypatch.chdir(tmp_path)  # neither the run's folder nor the new one
    summary = build_report(moved)
    assert (summary.records, summary.failed, summary.images) == (16, 1, 9)
    data = _report_data(moved)
    explained = [r for r in data["rows"] if "err" not in r]
    assert all(set(r["f"]) == {"heatmap", "overlay", "guided", "bbox", "sheet"} for r in explained)
    urls = [url for r in explained for url in [*r["f"].values(), r["t"]]]
    assert all(url.startswith("./") and (moved / unquote(url)).is_file() for url in urls), urls
    page = (moved / "index.html").read_text()
    assert "from evaluation/evaluation.jsonl" in page and 'src="./evaluation/sweep.png"' in page
    assert re.search(r'<script src="\./report/data-[0-9a-f]{16}\.js"></script>', page)
    for row in rows:  # one table row per method and layer, with its figures
        assert f"{row['method']} · {row['layer']}" in page
        assert f"<td>{row['maxboxacc']:.4g}</td>" in page and f"<td>{row['pointing_game']:.4g}</td>" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page and BAD_NAME not in page  # escaped by the template
    (moved / "run.json").unlink()  # an older folder: the paths are found from the folder itself
    build_report(moved)
    again = _report_data(moved)
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
    result = run("report", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"gradcam: error: {tmp_path}: no results.jsonl here; run `gradcam explain ... -o {tmp_path}` first"
    )
    assert run("report", tmp_path / "missing").exit_code == 2


def test_run_json_records_the_options_and_versions(sample_report):
    run = json.loads((sample_report / "run.json").read_text())
    assert run["model"] == "timm/tf_efficientnet_lite0" and run["layers"] == ["blocks.4", "bn2"]
    assert run["options"]["explain"]["sheet"] is True and "torch" in run["versions"]
    page = (sample_report / "index.html").read_text()
    assert "timm/tf_efficientnet_lite0" in page and f"torch {run['versions']['torch']}" in page


def test_data_file_cannot_close_a_script_tag(tmp_path):
    from gradcam_cli.report.build import _as_script

    text = _as_script({"rows": [{"err": "x</script><script>alert(1)</script>\u2028\u2029"}]}).decode()
    assert "</script>" not in text and json.loads(text.split("=", 1)[1].rstrip(";\n"))["rows"][0]["err"].startswith(
        "x</"
    )
    assert "\u2028" not in text and "\u2029" not in text and "\\u2028\\u2029" in text  # escaped, for older parsers


# Hostile file names, a full disk and symbolic links. Each name below was a way in: a picture link that ran
# script, a thumbnail that called a server, a path a URL parser reads as climbing out, a name that split a
# manifest line. The folders are made without a model (except the last test's, which `gradcam explain` makes).

SCRIPT_STEM = "javascript:window.__pwned=1;alert(7);x"


@pytest.fixture(scope="module")
def listener():
    """A real HTTP server on 127.0.0.1 at a free port, recording what reaches it: the report must call nothing."""
    hits = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):  # the name http.server calls
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(port=server.server_address[1], hits=hits)
    server.shutdown()
    server.server_close()


def _write_records(out: Path, records: list[dict]) -> None:
    """results.jsonl as the runner writes it: ensure_ascii=False, so U+0085, U+2028 and U+2029 stay raw."""
    (out / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )


def _picture_folder(out: Path, pictures: dict[str, int]) -> list[dict]:
    """An output folder as `gradcam explain` leaves it, made without a model: for each stem (a path below
    ``out``) an overlay PNG ``side`` pixels wide and a map .npy, and results.jsonl naming them by absolute path."""
    records = []
    for n, (stem, side) in enumerate(pictures.items()):
        overlay, raw = out / f"{stem}_gradcam_bn2_c{n}_overlay.png", out / f"{stem}_gradcam_bn2_c{n}_map.npy"
        overlay.parent.mkdir(parents=True, exist_ok=True)
        size = (side, side * 3 // 4)
        Image.new("RGB", size, (37 * n % 256, 90, 160)).save(overlay, format="PNG")
        np.save(raw, np.zeros((2, 2), np.float32))
        records.append(
            {
                "input": f"photos/{stem}.png",
                "class_index": n,
                "class_name": f"class {n}",
                "probability": 0.5,
                "method": "gradcam",
                "layer": "bn2",
                "image_size": list(size),
                "grid": [2, 2],
                "files": {"overlay": str(overlay), "raw": str(raw)},
            }
        )
    _write_records(out, records)
    return records


def _inside(out: Path):
    """Whether a URL is in the folder ``out``."""
    folder = out.resolve().as_uri() + "/"
    return lambda url: url.startswith(folder)


def test_a_file_named_like_a_script_url_is_only_a_picture(browser, tmp_path):
    out = tmp_path / "out"
    [record] = _picture_folder(out, {SCRIPT_STEM: 64})
    build_report(out)
    page, requests, errors, dialogs = open_page(browser, out / "index.html")
    inside = _inside(out)
    page.click("#table td.thumb a")  # real clicks, as a user's: the thumbnail, then the picture on its page
    page.wait_for_selector("body.detail")
    page.click("#detail figure img")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # a javascript: URL runs in a task after the click: give it the time to
    assert dialogs == [] and inside(page.url), (dialogs, page.url)
    assert unquote(page.url) == unquote(Path(record["files"]["overlay"]).resolve().as_uri())  # the picture itself
    page.go_back()
    page.wait_for_selector("body.detail")
    assert page.evaluate("window.__pwned") is None and errors == [] and all(map(inside, requests))
    page.close()


def test_opening_the_report_requests_nothing_outside_its_folder(browser, listener, tmp_path):
    out = tmp_path / "out"
    # As its own thumbnail (64 px) the name is an img src; a larger picture's thumbnail name keeps its '#'.
    _picture_folder(out, {f"http:127.0.0.1:{listener.port}#": 64, f"http:127.0.0.1:{listener.port}#big": 160})
    build_report(out)
    listener.hits.clear()
    page, requests, errors, dialogs = open_page(browser, out / "index.html")
    loaded = page.evaluate(LOAD_ALL_IMAGES, "#table img")
    page.wait_for_load_state("networkidle")
    inside = _inside(out)
    assert listener.hits == [] and all(map(inside, requests)), (listener.hits, requests)
    assert len(loaded) == 2 and all(width > 0 for _, width in loaded), loaded
    assert errors == [] and dialogs == []
    page.close()


def test_the_content_security_policy_applies_on_a_file_page(browser, listener, tmp_path):
    """The second wall: what markup injected into the page would do is refused, on file:// too."""
    out = tmp_path / "out"
    _picture_folder(out, {"cat": 160})
    build_report(out)
    listener.hits.clear()
    page, requests, errors, dialogs = open_page(browser, out / "index.html")
    [policy] = page.eval_on_selector_all('meta[http-equiv="Content-Security-Policy"]', "ms => ms.map((m) => m.content)")
    assert policy.startswith("default-src 'none';") and "unsafe" not in policy
    assert page.evaluate(LOAD_ALL_IMAGES, "#table img")[0][1] > 0 and errors == []  # the page itself works
    page.evaluate(
        """(port) => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.effectiveDirective));
      const img = new Image(); img.src = `http://127.0.0.1:${port}/injected.png`; document.body.prepend(img);
      const script = document.createElement("script"); script.textContent = "window.__inline = 1;";
      document.body.append(script);
      const link = document.createElement("a"); link.id = "injected"; link.textContent = "injected";
      link.href = "javascript:alert(8)"; document.body.prepend(link);
      document.body.insertAdjacentHTML("beforeend", '<img src="./missing.png" onerror="window.__handler = 1">');
      setTimeout("window.__evaluated = 1", 0);  // a string compiled by the page: eval
    }""",
        listener.port,
    )
    page.click("#injected")
    _wait_until(page, "window.__violations.length >= 5")
    page.wait_for_load_state("networkidle")
    assert sorted(page.evaluate("window.__violations")) == [
        "img-src",
        "script-src",
        "script-src-attr",
        "script-src-elem",
        "script-src-elem",
    ]
    assert page.evaluate("[window.__inline, window.__handler, window.__evaluated]") == [None, None, None]
    assert sum("Content Security Policy" in e for e in errors) >= 5  # each refusal is a console error
    assert dialogs == [] and listener.hits == []
    # The page's own requests are in its folder; the injected picture was asked for, and refused before
    # anything left the browser (the server above saw nothing).
    inside = _inside(out)
    assert [u for u in requests if not inside(u)] == [f"http://127.0.0.1:{listener.port}/injected.png"]
    page.close()


def test_the_page_also_works_served_over_http(browser, tmp_path):
    """'self' in the policy: the same folder, served by a web server, works as it does from file://."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    out = tmp_path / "out"
    _picture_folder(out, {"cat": 160, "q?x=1 #2": 64})
    build_report(out)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        errors, missing = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        thumbs = page.evaluate(LOAD_ALL_IMAGES, "#table img")
        assert len(thumbs) == 2 and all(width > 0 for _, width in thumbs), thumbs
        page.wait_for_load_state("networkidle")
        assert errors == [] and all(url.endswith("/favicon.ico") for url in missing), (errors, missing)
        page.close()
    finally:
        server.shutdown()
        server.server_close()


# Names a URL parser reads as syntax: a backslash is a separator in file: URLs, %2e%2e a '..', # and ? end
# the path, %25 decodes; each at both sizes (a picture above 112 px gets a thumbnail of its own).
SYNTAX_STEMS = [
    "in/a\\..\\..\\..\\planted",
    "in/a\\..\\..\\near",
    "%2e%2e/up",
    "%2E%2E/%2e%2e/up2",
    "hash#x",
    "q?x=1",
    "pct%25",
    "sp ace \"q\" 's'",
    "ünï 猫",
]


def test_urls_name_exactly_the_folders_files_and_every_picture_loads(browser, tmp_path):
    out = tmp_path / "site" / "out"
    records = _picture_folder(out, {f"{stem}{side}": side for stem in SYNTAX_STEMS for side in (64, 160)})
    build_report(out)
    data = _report_data(out)
    page, requests, errors, dialogs = open_page(browser, out / "index.html")
    urls, files = [], []
    for row, record in zip(data["rows"], records):
        for kind, path in record["files"].items():
            urls.append(row["f"][kind])
            files.append(Path(path).resolve())
    # Where the browser takes each URL: exactly the file the record names, never a neighbour or a file above.
    resolved = page.evaluate("(urls) => urls.map((u) => new URL(u, location.href).href)", urls)
    assert [unquote(u) for u in resolved] == [unquote(f.as_uri()) for f in files]
    assert all(url.startswith("./") for url in urls + [r["t"] for r in data["rows"]])
    widths = page.evaluate(
        """async (urls) => Promise.all(urls.map(async (u) => {
      const img = new Image(); img.src = u; try { await img.decode(); } catch (e) { } return img.naturalWidth; }))""",
        [u for u in urls if u.endswith(".png")],
    )
    assert widths == [r["image_size"][0] for r in records], widths
    thumbs = page.evaluate(LOAD_ALL_IMAGES, "#table img")
    assert len(thumbs) == len(records) and all(width > 0 for _, width in thumbs), thumbs
    assert errors == [] and dialogs == [] and all(map(_inside(out), requests))
    page.close()


def test_relative_urls_encode_every_character_but_the_unreserved():
    from gradcam_cli.report.links import relative_url

    examples = {
        "javascript:alert(7);x.png": "./javascript%3Aalert%287%29%3Bx.png",  # docs/report-security.md
        "http:127.0.0.1:8765#.png": "./http%3A127.0.0.1%3A8765%23.png",
        "in/a\\..\\..\\planted.png": "./in/a%5C..%5C..%5Cplanted.png",
        "%2e%2e/up.png": "./%252e%252e/up.png",
        "q?x=1.png": "./q%3Fx%3D1.png",
        "ünï 猫/x\udcff.png": "./%C3%BCn%C3%AF%20%E7%8C%AB/x%FF.png",
    }  # not UTF-8 on disk: its own byte
    assert {name: relative_url(name) for name in examples} == examples
    unreserved = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    for code in range(1, 128):
        c = chr(code)
        if c != "/":
            assert relative_url(f"a{c}b") == (f"./a{c}b" if c in unreserved else f"./a%{code:02X}b")
    for not_below in ("/etc/passwd", "", "a/../b", "..", "./a", "a//b"):
        with pytest.raises(ValueError):
            relative_url(not_below)


def test_files_outside_the_folder_are_refused_and_their_rows_kept(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    records = _picture_folder(out, {"inside": 64})
    elsewhere.mkdir()
    Image.new("RGB", (8, 6)).save(elsewhere / "x_overlay.png")
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)  # a linked folder elsewhere (out/sub -> ...)
    (out / "linked_overlay.png").symlink_to(elsewhere / "x_overlay.png")  # a linked picture elsewhere
    (out / "alias_overlay.png").symlink_to(Path(records[0]["files"]["overlay"]))  # a link within: the folder's own
    (elsewhere / "evaluation").mkdir()  # another folder's evaluation, linked in: neither read nor shown
    Image.new("RGB", (8, 6)).save(elsewhere / "evaluation" / "sweep.png")
    (elsewhere / "evaluation" / "evaluation.jsonl").write_text(json.dumps({"method": "planted", "layer": "x"}) + "\n")
    (out / "evaluation").symlink_to(elsewhere / "evaluation", target_is_directory=True)
    outside = [
        out / "sub" / "x_overlay.png",
        out / "linked_overlay.png",
        out / ".." / "elsewhere" / "x_overlay.png",
        elsewhere / "x_overlay.png",
    ]
    for n, path in enumerate([*outside, out / "alias_overlay.png"]):
        records.append({**records[0], "input": f"photos/linked{n}.png", "files": {"overlay": str(path)}})
    _write_records(out, records)
    build_report(out)
    data = _report_data(out)
    assert [data["images"][r["i"]]["in"] for r in data["rows"]] == [r["input"] for r in records]  # every row stays
    assert [r["f"] for r in data["rows"][1:5]] == [{}] * 4 and [r["t"] for r in data["rows"][1:5]] == [None] * 4
    assert data["rows"][5]["f"] == {"overlay": "./alias_overlay.png"}
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="evaluation"' not in page and "planted" not in page and "sweep" not in page


@pytest.mark.parametrize("name", ["results.jsonl", "results.1-of-2.jsonl"])
def test_a_linked_manifest_is_refused(tmp_path, name):
    """A manifest is read only when it is the folder's own file: a link could name any file, a device or a pipe."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    _picture_folder(elsewhere, {"cat": 64})
    out.mkdir()
    (out / name).symlink_to(elsewhere / "results.jsonl")
    with pytest.raises(UsageError):
        build_report(out)
    result = run("report", out)
    assert result.exit_code == 2
    assert result.stderr == (
        f"gradcam: error: {out / name}: a symbolic link; the report reads only manifests "
        f"that are files of the folder itself\n"
    )
    assert not (out / "index.html").exists()


def test_a_manifest_that_is_not_a_file_is_refused(tmp_path):
    """A pipe named results.jsonl would block a reader for ever: it is refused, not read."""
    import os

    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "results.jsonl")
    result = run("report", out)
    assert result.exit_code == 2
    assert result.stderr == f"gradcam: error: {out / 'results.jsonl'}: not a regular file\n"


def test_line_separators_in_names_lose_no_record(tmp_path):
    out = tmp_path / "out"
    records = _picture_folder(out, {f"name{n}{sep}x": 64 for n, sep in enumerate(LINE_BREAKS)})
    for record, sep in zip(records, LINE_BREAKS):
        record["class_name"] = f"class{sep}name"
    _write_records(out, records)
    assert all(c in (out / "results.jsonl").read_bytes().decode("utf-8") for c in "\x85\u2028\u2029")  # raw
    evaluation = [{"method": f"grad{sep}cam", "layer": "bn2", "images": 2} for sep in LINE_BREAKS]
    (out / "evaluation.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in evaluation), encoding="utf-8"
    )
    summary = build_report(out)
    data = _report_data(out)
    assert summary.records == len(data["rows"]) == len(LINE_BREAKS)
    assert [data["images"][r["i"]]["in"] for r in data["rows"]] == [r["input"] for r in records]
    assert [r["c"] for r in data["rows"]] == [r["class_name"] for r in records]
    assert all(set(r["f"]) == {"overlay", "raw"} for r in data["rows"])  # and their files
    page = (out / "index.html").read_bytes().decode("utf-8")  # read_text() would make each \r a \n
    assert all(html.escape(f"{e['method']} · bn2") in page for e in evaluation) and "cannot read" not in page


def _full_disk_at(nth: int, write):
    """``write`` that fails with ENOSPC on its ``nth`` call, as a full disk would."""
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, data)

    return failing


def test_a_full_disk_leaves_the_whole_report_or_none_of_it(tmp_path, monkeypatch):
    """index.html and its data file are one group: on a failed write the folder has the report it had before
    (or none), never a page without its rows or a page with another run's. (The pictures are thumbnail-sized:
    the two files of the group are the only files the report writes.)"""
    out = tmp_path / "out"
    _picture_folder(out, {"cat": 64, "dog": 64})
    write = report_module.write_bytes_atomic  # the writer report.py writes each of its files with
    monkeypatch.setattr(report_module, "write_bytes_atomic", _full_disk_at(2, write))
    result = run("report", out)
    assert result.exit_code == 2
    assert result.stderr == f"gradcam: error: {out}: cannot write the report (No space left on device)\n"
    assert not (out / "index.html").exists() and not [
        p for p in out.rglob("*") if "report" in p.parts[-2:] and p.is_file()
    ]
    monkeypatch.setattr(report_module, "write_bytes_atomic", write)
    build_report(out)
    before = {p: p.read_bytes() for p in [out / "index.html", *(out / "report").iterdir()]}
    shown = _report_data(out)
    _picture_folder(out, {"cat": 64, "dog": 64, "bird": 64})  # a later run: the report now has three rows
    for nth in (1, 2):
        monkeypatch.setattr(report_module, "write_bytes_atomic", _full_disk_at(nth, write))
        with pytest.raises(OSError):
            build_report(out)
        assert {p: p.read_bytes() for p in [out / "index.html", *(out / "report").iterdir()]} == before
        assert _report_data(out) == shown
    monkeypatch.setattr(report_module, "write_bytes_atomic", write)
    build_report(out)
    assert len(_report_data(out)["rows"]) == 3 and len(list((out / "report").iterdir())) == 1  # the old data gone


# The browser test over every crafted name at once, explained by `gradcam explain` itself.
CRAFTED = [
    SCRIPT_STEM + ".png",
    "http:127.0.0.1:{port}#.png",
    "in/a\\..\\..\\planted.png",
    "%2e%2e/up.png",
    "hash#x.png",
    "q?x=1.png",
    "pct%25.png",
    "sp ace \"q\" 's'.png",
    "<img src=x onerror=alert(2)>.png",
    "ls\u2028x.png",
    "ps\u2029x.png",
    "L" * 200 + ".png",
    "ünïcødé Ωλ 猫.png",
]


@pytest.fixture(scope="module")
def crafted_report(tmp_path_factory, samples, listener):
    """Real photos under every crafted name (two sizes: as their own thumbnail and with one made), explained
    with sheets and raw maps, and the report written by `gradcam explain --report`."""
    root = tmp_path_factory.mktemp("crafted")
    photos, out = root / "photos", root / "out"
    small = Image.open(samples / "samoyed.png").convert("RGB").resize((96, 96))
    large = Image.open(samples / "cat.png").convert("RGB").resize((160, 107))
    for n, name in enumerate(CRAFTED):
        path = photos / name.format(port=listener.port)
        path.parent.mkdir(parents=True, exist_ok=True)
        (large if n % 2 else small).save(path, format="PNG")
    # --no-caption: a sheet's caption names the photo, and Pillow's text layout fails on U+2029 in a name.
    result = run(
        "explain",
        photos,
        "-r",
        "-o",
        out,
        "--outputs",
        "overlay,heatmap",
        "--sheet",
        "--no-caption",
        "--save-raw",
        "-b",
        "4",
        "--report",
    )
    assert result.exit_code == 0, result.output
    return out


def test_crafted_names_in_a_real_browser(crafted_report, browser, listener):
    out = crafted_report
    records, data = _records(out), _report_data(out)
    assert len(records) == len(CRAFTED)
    listener.hits.clear()
    page, requests, errors, dialogs = open_page(browser, out / "index.html")
    index_url = page.url
    inside = _inside(out)
    assert len(_rows(page)) == len(records)  # every record shown, by its whole name
    titles = page.eval_on_selector_all("#table tbody td:nth-child(2) a", "links => links.map((a) => a.title)")
    assert sorted(titles) == sorted(r["input"] for r in records)
    thumbs = page.evaluate(LOAD_ALL_IMAGES, "#table img")
    assert len(thumbs) == len(records) and all(width > 0 for _, width in thumbs), thumbs
    for n in range(len(records)):
        _click_through_image(page, out, data, n, index_url)
    page.wait_for_load_state("networkidle")
    assert dialogs == [] and page.evaluate("window.__pwned") is None
    assert listener.hits == [] and requests and all(map(inside, requests)), [u for u in requests if not inside(u)]
    assert errors == []
    page.close()


def _click_through_image(page, out: Path, data: dict, n: int, index_url: str) -> None:
    """Row ``n``'s thumbnail, then every picture and link of its page, each by a real click: each lands on
    the folder's own file (and back), and every picture on the page loads."""
    link = page.locator("#table tbody tr").nth(n).locator("td.thumb a")
    anchor = link.get_attribute("href")
    link.click()
    page.wait_for_selector("body.detail")
    detail_url = page.url
    assert detail_url == index_url + anchor
    title = page.locator("#table tbody tr").nth(n).locator("td:nth-child(2) a").get_attribute("title")
    assert page.inner_text("#detail h2") == title
    pictures = page.evaluate(LOAD_ALL_IMAGES, "#detail img")
    assert len(pictures) == 3 and all(width > 0 for _, width in pictures), pictures  # sheet, overlay, heatmap
    hrefs = page.eval_on_selector_all("#detail a", "links => links.map((a) => a.getAttribute('href'))")
    assert len(hrefs) == 5 and hrefs[0] == "#results"  # back, 3 pictures, the .npy map
    # The page links the URLs the report made, as they are (the script builds none from a name).
    assert sorted(hrefs[1:]) == sorted({u for r in data["rows"] if r["i"] == int(anchor[7:]) for u in r["f"].values()})
    for k, href in enumerate(hrefs[1:], start=1):
        target = page.locator("#detail a").nth(k)
        (target.locator("img") if target.locator("img").count() else target).click()
        page.wait_for_load_state("load")
        assert unquote(page.url) in (unquote(detail_url), unquote((out.resolve() / unquote(href)).as_uri()))
        if page.url != detail_url:  # a picture opened: back to the image's page
            page.go_back()
            page.wait_for_selector("body.detail")
            assert page.url == detail_url
    page.click("#detail a.back")
    page.wait_for_selector("body:not(.detail)")
