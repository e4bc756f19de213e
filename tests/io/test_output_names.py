"""Output names: distinct inputs of a run never share a file, and the same inputs get the same names."""

from __future__ import annotations

import random
from pathlib import Path, PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam_cli.io.inputs import InputImage, collect_inputs, output_names, safe_part, safe_rel

from helpers import SAMPLES, records, run

# Folder and file names as a user, or an attacker choosing names, might make them: case variants, dots,
# separators that are not separators here, percent signs, colons, the names the disambiguation produces.
PART = st.one_of(
    st.sampled_from(
        [
            "x",
            "X",
            "x-png",
            "x-jpg",
            "c:",
            "C",
            "c",
            ".",
            "..",
            "%2E",
            "a%25b",
            "a\\b",
            "x-png-1a2b3c4d",
            "dog",
            "Dog",
            " ",
            "é",
            "e\u0301",
        ]
    ),
    st.text(alphabet="aAbB.-_:%\\\u2028 ", min_size=1, max_size=6),
)
SUFFIX = st.sampled_from([".png", ".PNG", ".jpg", ".Png", "", ".tar.png", ".x-png"])
PATHS = st.lists(st.tuples(st.lists(PART, max_size=3), PART, SUFFIX), min_size=1, max_size=12)


def items_of(paths) -> list[InputImage]:
    found, seen = [], set()
    for folders, stem, suffix in paths:
        rel = safe_rel([*folders, stem + suffix])
        key = (tuple(folders), stem + suffix)
        if key not in seen:  # one input per path
            seen.add(key)
            found.append(InputImage("/".join([*folders, stem + suffix]), rel))
    return found


def output_files(items: list[InputImage]) -> list[str]:
    """Where each item's heatmap goes, compared as a case-insensitive filesystem would."""
    return [f"{item.out_subdir}/{item.stem}_gradcam_bn2_c0_heatmap.png".casefold() for item in items]


@settings(max_examples=400, deadline=None)
@given(PATHS, st.randoms())
def test_distinct_inputs_get_distinct_outputs_whatever_their_names(paths, rng) -> None:
    items = items_of(paths)
    named = output_names(items)
    files = output_files(named)
    assert len(set(files)) == len(files), files
    # The same inputs in another order get the same names: names depend on the set, not on the listing.
    shuffled = list(items)
    rng.shuffle(shuffled)
    again = {item.path: item.stem for item in output_names(shuffled)}
    assert again == {item.path: item.stem for item in named}


def test_a_folder_named_like_a_windows_root_is_a_folder_here() -> None:
    """Found by the property above: ``x.png`` and ``\\/x.png`` (a folder named ``\\``, valid on Linux) once shared
    their files, as the folder was dropped like a root. Only a leading root of this system is dropped."""
    files = output_files(output_names(items_of([([], "x", ".png"), (["\\"], "x", ".png")])))
    assert len(set(files)) == 2, files
    assert safe_rel(["\\", "x.png"]) == PurePosixPath("%5C/x.png")
    assert safe_rel(["/", "srv", "x.png"]) == PurePosixPath("srv/x.png")  # an absolute path's root


@settings(max_examples=200, deadline=None)
@given(st.lists(PART, min_size=1, max_size=4))
def test_a_path_part_made_safe_stays_inside_and_distinct(parts) -> None:
    safe = [safe_part(p) for p in parts]
    assert all("/" not in s and "\\" not in s and s not in (".", "..", "") for s in safe)
    assert len(set(safe)) == len(set(parts))  # injective: distinct parts stay distinct
    assert ".." not in safe_rel(parts).parts and not safe_rel(parts).is_absolute()


def test_the_reported_collisions_get_distinct_files(tmp_path) -> None:
    """x.png and x.PNG; x.png, x.jpg and x-png.png; C/cat.png and C/c:/cat.png under -r."""
    photo = Image.open(SAMPLES / "cat.png").convert("RGB").resize((64, 48))
    folder = tmp_path / "in"
    for rel in ("a/x.png", "a/x.PNG", "b/x.png", "b/x.jpg", "b/x-png.png", "C/cat.png", "C/c:/cat.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        photo.save(folder / rel, format="JPEG" if rel.endswith(".jpg") else "PNG")
    out = tmp_path / "out"
    for flags in ((), ("--overwrite",), ("--skip-existing",)):
        result = run("explain", folder, "-r", "-o", out, "--json", "--outputs", "heatmap", *flags)
        assert result.exit_code == 0, result.output
    found = records(run("explain", folder, "-r", "-o", out, "--json", "--outputs", "heatmap", "--overwrite"))
    heatmaps = [r["files"]["heatmap"] for r in found]
    assert len(found) == 7 and len({h.casefold() for h in heatmaps}) == 7, heatmaps
    assert all(Path(h).is_file() for h in heatmaps)
    assert any("c%3A" in h for h in heatmaps)  # the folder "c:" is kept, spelt safely, not dropped
    assert {Path(h).parent.name for h in heatmaps} >= {"a", "b", "C"}


def test_names_are_the_plain_stem_where_nothing_meets() -> None:
    items = [
        InputImage(f"{d}/{n}", PurePosixPath(d) / n) for d, n in (("p", "cat.png"), ("p", "dog.png"), ("q", "cat.png"))
    ]
    assert [i.stem for i in output_names(items)] == ["cat", "dog", "cat"]
    pair = [InputImage(n, PurePosixPath(n)) for n in ("dog.jpg", "dog.png")]
    assert [i.stem for i in output_names(pair)] == ["dog-jpg", "dog-png"]


def test_collected_inputs_get_distinct_names_for_every_random_tree(tmp_path) -> None:
    rng = random.Random(0)
    stems = ["x", "X", "x-png", "x-jpg"]
    for _ in range(12):
        rel = f"{rng.choice(['d', 'D', 'e'])}/{rng.choice(stems)}{rng.choice(['.png', '.PNG', '.jpg'])}"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = collect_inputs([str(tmp_path)], recursive=True)
    files = output_files(items)
    assert len(set(files)) == len(files) == len(items)
