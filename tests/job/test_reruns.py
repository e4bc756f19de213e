"""Re-running into an output folder never loses a good record nor moves other outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SAMPLES, gradcam_here, manifest_records


def test_rerun_without_overwrite_never_loses_a_good_record(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.png", "dogs.png"):
        (photos / name).write_bytes((SAMPLES / name).read_bytes())
    out = tmp_path / "out"
    first = gradcam_here("explain", photos / "cat.png", photos / "dogs.png", "-o", out, "--outputs", "heatmap")
    assert first.returncode == 0, first.stderr
    good = manifest_records(out)
    assert len(good) == 2 and not any("error" in r for r in good)

    (photos / "bird.png").write_bytes((SAMPLES / "bird.png").read_bytes())
    again = gradcam_here("explain", photos, "-o", out, "--outputs", "heatmap")  # no --overwrite: two of three exist
    assert again.returncode == 1
    assert again.stderr.count("output exists") == 2, again.stderr
    after = {r["input"]: r for r in manifest_records(out)}
    for record in good:  # the earlier records, unchanged
        assert after[record["input"]] == record
    assert "error" not in after[str(photos / "bird.png")]  # and the new image's

    (photos / "dogs.png").write_bytes(b"now corrupt")
    third = gradcam_here("explain", photos / "dogs.png", "-o", out, "--outputs", "heatmap", "--overwrite")
    assert third.returncode == 1 and "dogs.png: not an image file" in third.stderr
    assert {r["input"]: r for r in manifest_records(out)}[str(photos / "dogs.png")] == good[1]


@pytest.mark.parametrize("how", ["arguments", "stdin"])
def test_a_missing_input_does_not_move_the_other_outputs(tmp_path, how):
    photo = tmp_path / "shoot" / "day1" / "cat.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes((SAMPLES / "cat.png").read_bytes())
    missing = tmp_path / "elsewhere" / "gone.png"

    def files_of(paths, out):
        args = ("-",) if how == "stdin" else paths
        text = "".join(f"{p}\n" for p in paths) if how == "stdin" else None
        done = gradcam_here("explain", *args, "-o", out, "--outputs", "heatmap", input=text)
        return done, {r["input"]: r.get("files") for r in manifest_records(out)}

    alone, files_alone = files_of([photo], tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    mixed, files_mixed = files_of([photo, missing], tmp_path / "mixed")
    assert mixed.returncode == 1 and f"{missing}: no such file" in mixed.stderr
    placed = Path(files_mixed[str(photo)]["heatmap"]).relative_to(tmp_path / "mixed")
    assert placed == Path(files_alone[str(photo)]["heatmap"]).relative_to(tmp_path / "alone")
    assert placed == Path("cat_gradcam_bn2_c285_heatmap.png")
