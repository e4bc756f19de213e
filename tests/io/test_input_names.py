"""Input names from stdin and with spaces or newlines reach the outputs intact."""

from __future__ import annotations

from helpers import SAMPLES, records, run


def test_stdin_paths_lose_their_line_ending_only():
    import io

    from gradcam_cli.io.inputs import read_stdin_paths

    crlf = b"trailing space.png \r\nends in cr.png\r\r\nplain.png\r\n\r\n   \nlast.png"
    assert read_stdin_paths(False, io.BytesIO(crlf)) == [
        "trailing space.png ",
        "ends in cr.png\r",
        "plain.png",
        "   ",
        "last.png",
    ]
    assert read_stdin_paths(True, io.BytesIO(b"two\nlines.png\0 spaced .png\0")) == ["two\nlines.png", " spaced .png"]


def test_names_with_spaces_and_newlines_through_the_command(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = [folder / "space at end.png ", folder / "new\nline.png", folder / "ends in a carriage return.png\r"]
    for path in odd:
        path.write_bytes((SAMPLES / "cat.png").read_bytes())
    out = tmp_path / "out"
    listing = ("\0".join(map(str, odd)) + "\0").encode()  # bytes: no newline translation on the way
    result = run("explain", "-0", "-", "-o", out, "--outputs", "heatmap", "--json", input=listing)
    assert result.exit_code == 0, result.output
    assert {r["input"] for r in records(result)} == set(map(str, odd))
    crlf = f"{odd[0]}\r\n{odd[2]}\r\n".encode()  # a Windows list: each line loses its "\r\n", nothing else
    result = run("explain", "-", "-o", out, "--outputs", "heatmap", "--json", "--overwrite", input=crlf)
    assert result.exit_code == 0, result.output
    assert [r["input"] for r in records(result)] == [str(odd[0]), str(odd[2])]
