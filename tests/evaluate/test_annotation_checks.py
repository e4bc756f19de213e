"""gradcam evaluate against annotations that do not fit their photos: warned about, counted, left out."""

from __future__ import annotations

import json

from helpers import SAMPLES, run


def test_boxes_outside_the_photo_are_warned_about_counted_and_left_out(tmp_path) -> None:
    boxes = tmp_path / "boxes.csv"  # cat.png is 512x341
    boxes.write_text(
        "file,class,x0,y0,x1,y1\ncat.png,285,600,400,900,500\ncat.png,285,300,100,700,300\n"
        "samoyed.png,258,10,10,100,100\nsamoyed.png,258,20,20,60,60\nsamoyed.png,258,5,5,40,40\n"
    )
    result = run("evaluate", SAMPLES / "cat.png", SAMPLES / "samoyed.png", "-a", boxes, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (
        "cat.png: 1 of 2 annotated boxes lie outside the photo and are left out (e.g. 600,400,900,500); "
        "1 of 2 annotated boxes reach outside the photo and are cut at its border" in result.stderr
    )
    [summary] = [json.loads(line) for line in (tmp_path / "out" / "evaluation.jsonl").read_text().splitlines()]
    assert (summary["boxes"], summary["boxes_outside"], summary["boxes_clipped"]) == (5, 1, 1)
    assert summary["samples"] == 2 and "another scale" not in result.stderr and "(resized)" not in result.stderr


def test_a_file_whose_boxes_mostly_miss_their_photos_is_probably_at_another_scale(tmp_path) -> None:
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\ncat.png,285,285,600,400,900\nsamoyed.png,258,10,10,2000,1500\n")
    result = run("evaluate", SAMPLES / "cat.png", SAMPLES / "samoyed.png", "-a", boxes, "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert (
        "2 of 2 annotated boxes reach outside their photos: are the annotations in the pixels of other "
        "(resized) copies of the photos?" in result.stderr
    )
    [summary] = [json.loads(line) for line in (tmp_path / "out" / "evaluation.jsonl").read_text().splitlines()]
    assert summary["samples"] == 1  # cat.png's only box is outside: no sample; samoyed's is cut to the photo


def test_evaluate_reports_how_often_the_box_is_the_whole_photo(tmp_path) -> None:
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\nhot_dog.jpg,934,0,0,50,50\n")
    low = run(
        "evaluate",
        SAMPLES / "hot_dog.jpg",
        "-a",
        boxes,
        "-o",
        tmp_path / "low",
        "--bbox-threshold",
        "0.01",
        "--json",
        "--view",
        "full",
    )
    high = run(
        "evaluate",
        SAMPLES / "hot_dog.jpg",
        "-a",
        boxes,
        "-o",
        tmp_path / "high",
        "--bbox-threshold",
        "0.9",
        "--json",
        "--view",
        "full",
    )
    assert json.loads(low.stdout)["whole_photo_boxes"] == 1.0  # at 1% of the peak everything is the object
    assert json.loads(high.stdout)["whole_photo_boxes"] == 0.0
