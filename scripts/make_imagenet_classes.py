"""Write ``gradcam_cli/imagenet_classes.json``: the ImageNet-1k class names and their WordNet hypernyms.

The CLI checks ``--class NAME`` before it loads a model, and suggests classes by meaning
(``cat`` -> tabby, tiger cat, Persian cat, ...). Both need the names without importing timm
(seconds), and the suggestions need WordNet's is-a links, which no runtime dependency ships.
So this script derives one small JSON file, committed with the package:

- class order and descriptions ("tabby, tabby cat"): timm's ImageNet-1k files, exactly as
  ``timm.data.ImageNetInfo`` gives them;
- hypernyms: WordNet 3.0 (ImageNet's class ids are WordNet 3.0 noun offsets), every ancestor
  of each class with its distance, from the noun database of Debian's ``wordnet-base``
  package (``apt-get install wordnet-base``: ``/usr/share/wordnet/data.noun``).

Run: ``python scripts/make_imagenet_classes.py [--wordnet DIR]``
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "gradcam_cli" / "imagenet_classes.json"


def timm_classes() -> list[tuple[str, str]]:
    """``(wnid, description)`` for the 1000 classes in index order, from timm's own data."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [(info.index_to_label_name(i), info.index_to_description(i)) for i in range(1000)]


def read_wordnet_nouns(folder: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(lemmas, hypernyms)`` by wnid (``n`` + offset) from WordNet's ``data.noun``."""
    lemmas: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        wnid = "n" + fields[0]
        count = int(fields[3], 16)
        words = fields[4 : 4 + 2 * count : 2]
        lemmas[wnid] = [w.replace("_", " ") for w in words]
        rest = fields[4 + 2 * count :]
        pointers = int(rest[0])
        parents[wnid] = [
            "n" + rest[1 + 4 * i + 1]
            for i in range(pointers)
            if rest[1 + 4 * i] in ("@", "@i") and rest[1 + 4 * i + 2] == "n"
        ]
    return lemmas, parents


def ancestors(wnid: str, parents: dict[str, list[str]]) -> list[tuple[int, str]]:
    """Every hypernym of ``wnid`` with its shortest distance, nearest first."""
    seen = {wnid: 0}
    queue = deque([wnid])
    while queue:
        node = queue.popleft()
        for parent in parents.get(node, []):
            if parent not in seen:
                seen[parent] = seen[node] + 1
                queue.append(parent)
    return sorted(((d, s) for s, d in seen.items() if s != wnid), key=lambda t: (t[0], t[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wordnet",
        type=Path,
        default=Path("/usr/share/wordnet"),
        help="folder with WordNet 3.0's data.noun (default: Debian's wordnet-base)",
    )
    args = parser.parse_args()
    lemmas, parents = read_wordnet_nouns(args.wordnet)
    found = []
    for wnid, description in timm_classes():
        if wnid not in lemmas:
            raise SystemExit(f"{wnid} is not in {args.wordnet}/data.noun: not WordNet 3.0?")
        found.append((wnid, description, ancestors(wnid, parents)))
    hypernyms = sorted({s for *_, up in found for _, s in up})
    number = {s: i for i, s in enumerate(hypernyms)}
    data = {
        "about": "ImageNet-1k classes in index order as [wnid, timm's description, [distance, hypernym, distance, "
        "hypernym, ...]], a hypernym being an index into 'hypernyms' ([wnid, WordNet 3.0 lemmas]). "
        "Written by scripts/make_imagenet_classes.py: do not edit.",
        "classes": [[wnid, description, [x for d, s in up for x in (d, number[s])]] for wnid, description, up in found],
        "hypernyms": [[s, ", ".join(lemmas[s])] for s in hypernyms],
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB, {len(hypernyms)} hypernyms)")


if __name__ == "__main__":
    main()
