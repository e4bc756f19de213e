"""The report's comparison page, opened from file:// in headless Chromium (Debian's, driven by Playwright): the
worst pairs first with their three pictures (baseline | candidate | difference) loaded from the folder, nothing
requested outside it, no error or policy violation, and hostile input names shown as text."""

import json
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
from safetensors.torch import save_file

from helpers import SAMPLES, open_page, run

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<img src=x onerror=alert(1)>#?.png"  # markup and URL syntax in a file name


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Two test_resnet runs (random weights, then layer4 re-initialised) over the photos and a hostile name;
    compared into the candidate's compare/ folder, with a report in both folders."""
    import timm

    root = tmp_path_factory.mktemp("compare-report")
    photos = root / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.md"))
    shutil.copy(SAMPLES / "cat.png", photos / HOSTILE)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    for name in ("a", "b"):
        if name == "b":
            for module in model.layer4.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / f"{name}.safetensors"))
        done = run(
            "explain",
            photos,
            "-m",
            "test_resnet",
            "--no-pretrained",
            "--weights",
            root / f"{name}.safetensors",
            "--save-raw",
            "--outputs",
            "heatmap",
            "-o",
            root / name,
        )
        assert done.exit_code == 0, done.output
    out = root / "b" / "compare"
    done = run("compare", root / "a", root / "b", "-o", out, "--fail-under", "spearman=0.9", "--report")
    assert done.exit_code == 1 and (out / "index.html").is_file(), done.output
    assert run("report", root / "b").exit_code == 0
    return root


def _pictures_loaded(page) -> list[tuple[str, int]]:
    """Every picture of the pairs table, decoded: (src, natural width)."""
    script = """async () => {
      const images = [...document.querySelectorAll('#pairs img')];
      for (const img of images) {
        img.loading = 'eager'; img.scrollIntoView(); try { await img.decode(); } catch (e) {}
      }
      return images.map((img) => [img.getAttribute('src'), img.naturalWidth]);
    }"""
    return page.evaluate(script)


@pytest.mark.parametrize("where", ["b/compare", "b"])
def test_the_comparison_page_in_a_real_browser(compared, browser, where):
    folder = compared / where
    page, requests, errors, dialogs = open_page(browser, folder / "index.html")
    summary = json.loads((compared / "b" / "compare" / "compare.json").read_text())
    assert page.text_content("#comparison .verdict").startswith("FAILED: 9 pairs")
    rows = page.eval_on_selector_all("#pairs tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    shown = [p["input"] for p in summary["pictures"]]
    assert len(rows) == 9 and [r.split(" · ")[0] for r in rows] == shown  # the worst pairs first
    spearman = [p["spearman"] for p in summary["pictures"]]
    assert spearman == sorted(spearman)  # one bound on spearman: failing pairs by margin, then the rest, ascending
    assert any(HOSTILE in r for r in rows)  # the name is text, not markup
    pictures = _pictures_loaded(page)
    assert len(pictures) == 27 and all(width > 0 for _, width in pictures)
    time.sleep(0.2)
    root = folder.resolve()
    for url in requests:
        parsed = urlparse(url)
        assert parsed.scheme == "file", url
        Path(unquote(parsed.path)).resolve().relative_to(root)  # nothing outside the folder
    assert not errors and not dialogs
    page.close()


def test_pictures_the_summary_names_outside_the_folder_are_not_shown(compared, tmp_path):
    """compare.json is data: a picture path out of the folder, absolute, or a link to a file elsewhere is dropped
    (its row keeps its text), and a summary that is not JSON is shown as an error, never as markup."""
    from gradcam_cli.report.compare import comparison

    folder = tmp_path / "cmp"
    shutil.copytree(compared / "b" / "compare", folder)
    outside = tmp_path / "secret.png"
    shutil.copy(next((folder / "pictures").glob("*_baseline.png")), outside)
    (folder / "pictures" / "link.png").symlink_to(outside)
    summary = json.loads((folder / "compare.json").read_text())
    summary["pictures"][0]["files"] = {
        "baseline": "../secret.png",
        "candidate": str(outside),
        "difference": "pictures/link.png",
    }
    (folder / "compare.json").write_text(json.dumps(summary))
    section = comparison(folder)
    assert [p["src"] for p in section["pairs"][0]["pictures"]] == [None, None, None]
    assert all(p["src"].startswith("./pictures/") for p in section["pairs"][1]["pictures"])
    (folder / "compare.json").write_text("<script>alert(1)</script>")
    assert comparison(folder)["error"].startswith("cannot read compare.json")
