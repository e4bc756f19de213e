"""Start-up: heavy libraries are imported only where needed, and layer tables are cached."""

from __future__ import annotations

import json

from helpers import probe


def run_cli(args: list[str], cache_dir) -> tuple[str, list[str]]:
    done = probe(args, env={"GRADCAM_CACHE_DIR": str(cache_dir)})
    assert done.exit_code == 0, done.stderr
    return done.stdout, done.imported


def test_help_imports_no_heavy_library(tmp_path) -> None:
    body, imported = run_cli(["--help"], tmp_path)
    assert "explain" in body and "layers" in body
    assert imported == []


def test_layers_table_is_cached_and_the_cached_listing_needs_no_torch(tmp_path) -> None:
    cache = tmp_path / "cache"
    first, imported_first = run_cli(["layers", "--model", "resnet18", "--json"], cache)
    assert "torch" in imported_first and "timm" in imported_first
    assert len(list(cache.glob("layers-*.json"))) == 1
    second, imported_second = run_cli(["layers", "--model", "resnet18", "--json"], cache)
    assert second == first
    assert imported_second == []
    rows = json.loads(first)
    assert [r["path"] for r in rows if r["default"]] == ["layer4"]
    assert {
        "path": "layer4",
        "type": "Sequential",
        "shape": [512, 7, 7],
        "layout": "channels_first",
        "grid": [7, 7],
        "prefix_tokens": 0,
        "default": True,
    } in rows


def test_layers_cache_is_keyed_and_can_be_bypassed(tmp_path, monkeypatch) -> None:
    from helpers import gradcam_here

    cache = tmp_path / "cache"
    resnet, _ = run_cli(["layers", "--model", "resnet18", "--json"], cache)
    monkeypatch.setenv("GRADCAM_CACHE_DIR", str(cache))  # in this process: what it imports is not asked here
    other = gradcam_here("layers", "--model", "resnet18", "--num-classes", "10", "--json").stdout
    assert len(list(cache.glob("layers-*.json"))) == 2  # one entry per (model, classes)
    assert json.loads(other) == json.loads(resnet)  # a different head leaves the spatial layers alone
    for f in cache.glob("layers-*.json"):
        f.write_text("{ not json")  # a damaged entry is rebuilt, not trusted
    again, imported = run_cli(["layers", "--model", "resnet18", "--json"], cache)
    assert again == resnet and "torch" in imported
    fresh, imported = run_cli(["layers", "--model", "resnet18", "--json", "--no-cache"], tmp_path / "unused")
    assert fresh == resnet and "torch" in imported
    assert not (tmp_path / "unused").exists()
