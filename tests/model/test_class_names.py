"""Class and layer names: suggestions for a wrong name, and ImageNet's names as timm spells them."""

from __future__ import annotations

import json
import re

import pytest

from gradcam_cli.errors import UsageError

from helpers import SAMPLES, run


def test_class_suggestions_rank_meaning_before_spelling():
    from gradcam_cli.model.labels import imagenet_labels, resolve_class

    def suggested(word):
        with pytest.raises(UsageError) as info:
            resolve_class(word, imagenet_labels(), 1000)
        return re.findall(r"'([^']+)'", str(info.value).split("did you mean:")[1])

    assert suggested("cat") == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert suggested("big cat") == ["leopard", "snow leopard", "jaguar", "lion", "tiger"]  # WordNet's "big cat"
    assert suggested("tabbby")[0] == "tabby"  # no meaning: spelling
    assert resolve_class("Tabby Cat", imagenet_labels(), 1000) == 281


def test_imagenet_names_are_timms():
    from timm.data import ImageNetInfo

    from gradcam_cli.model.labels import imagenet_descriptions

    info = ImageNetInfo()
    assert imagenet_descriptions() == tuple(info.index_to_description(i) for i in range(1000))


def suggested_layers(message: str) -> list[str]:
    """The layer names a --layer error suggests: after "did you mean:", or after "before it is"."""
    if "did you mean: " in message:
        return message.split("did you mean: ")[1].rstrip("?\n").split(", ")
    if "before it is " in message:
        return [message.split("before it is ")[1].strip()]
    return []


def test_layer_suggestions_come_from_the_layers_listing(tmp_path):
    listed = {r["path"] for r in json.loads(run("layers", "--model", "resnet18", "--json").stdout)}
    for layer, expected in (("fc", ["layer4"]), ("layer4.1.act9", None), ("layer9", None)):
        result = run(
            "explain",
            SAMPLES / "cat.png",
            "--model",
            "resnet18",
            "--no-pretrained",
            "--layer",
            layer,
            "-o",
            tmp_path / "out",
        )
        assert result.exit_code == 2, result.output
        names = suggested_layers(result.stderr)
        assert names and set(names) <= listed, (layer, result.stderr)
        assert expected is None or names == expected, result.stderr
