"""Whether two runs can be compared, from what ``run.json`` (and the records) say of them.

Refused (a usage error, unless ``--allow-mismatch``): runs in another *view* (the crop view's maps are zero
where the crop cut the photo, so every pair would differ for that alone) and runs of other *class sets* (class N
names another thing: a pair of maps of "class N" would compare two questions). Warned about, with the reason:
another preprocessing (the models saw other inputs: that may be the change under test), other box settings
(box IoU reflects them too), other method settings, photos scaled to other sizes (maps resampled), layers paired
by position, and explanations only one run has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from .runs import Side

# Explanation options that change the maps or the boxes without changing what is paired.
MAP_SETTINGS = ("smooth", "occlusion_window", "occlusion_stride", "precision")
BOX_SETTINGS = ("bbox_threshold", "bbox_mode")


@dataclass
class Compatibility:
    """The reasons two runs cannot be compared (refusals) and those that qualify the comparison (warnings)."""

    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def enforce(self, allow_mismatch: bool) -> list[str]:
        """The warnings to show; the refusals raise a usage error unless ``allow_mismatch`` makes them warnings."""
        if self.refusals and not allow_mismatch:
            raise UsageError(f"cannot compare: {'; '.join(self.refusals)} (pass --allow-mismatch to compare anyway)")
        return [f"{r} (compared anyway: --allow-mismatch)" for r in self.refusals] + self.warnings


def _explain(info: dict | None) -> dict:
    return ((info or {}).get("options") or {}).get("explain") or {}


def _model(info: dict | None) -> dict:
    return ((info or {}).get("options") or {}).get("model") or {}


def check_sides(baseline: Side, candidate: Side) -> Compatibility:
    """What run.json and the records of the two runs say about comparing them."""
    found = Compatibility()
    for side in (baseline, candidate):
        if side.info is None:
            found.warnings.append(f"{side.role} {side.label}: no run.json, so its options are unknown and unchecked")
    if baseline.info is None or candidate.info is None:
        _check_class_names(baseline, candidate, found)
        return found
    b, c = baseline.info, candidate.info
    if b.get("view") != c.get("view"):
        found.refusals.append(
            f"the views differ (baseline {b.get('view')}, candidate {c.get('view')}): crop-view maps are zero where "
            "the crop cut the photo, so every pair would differ for that alone"
        )
    _check_preprocess(b.get("preprocess") or {}, c.get("preprocess") or {}, found)
    _check_settings(_explain(b), _explain(c), found)
    _check_class_names(baseline, candidate, found)
    counts = (_model(b).get("num_classes"), _model(c).get("num_classes"))
    if None not in counts and counts[0] != counts[1]:
        found.refusals.append(f"the class sets differ (baseline {counts[0]} classes, candidate {counts[1]})")
    return found


def _check_preprocess(b: dict, c: dict, found: Compatibility) -> None:
    keys = [k for k in dict.fromkeys([*b, *c]) if k != "size_multiple" and b.get(k) != c.get(k)]
    if keys:
        shown = "; ".join(f"{k} {_text(b.get(k))} -> {_text(c.get(k))}" for k in keys)
        found.warnings.append(
            f"the preprocessing differs ({shown}): the models saw other inputs; the maps are compared on the photo"
        )


def _check_settings(b: dict, c: dict, found: Compatibility) -> None:
    for names, effect in (
        (BOX_SETTINGS, "box_iou measures the settings' difference too"),
        (MAP_SETTINGS, "the maps differ by the settings too"),
        (("max_output_pixels",), "the photos were scaled to other sizes: maps are resampled to the baseline's"),
    ):
        changed = [n for n in names if n in b and n in c and b[n] != c[n]]
        if changed:
            shown = ", ".join(f"{n} {_text(b[n])} -> {_text(c[n])}" for n in changed)
            found.warnings.append(f"other settings ({shown}): {effect}")


def _check_class_names(baseline: Side, candidate: Side, found: Compatibility) -> None:
    """The same class index naming another class in the two runs: the class sets differ."""
    names: dict[int, str] = {}
    for entry in baseline.entries.values():
        if entry.record.get("class_name") is not None:
            names.setdefault(entry.record.get("class_index"), entry.record["class_name"])
    for entry in candidate.entries.values():
        index, name = entry.record.get("class_index"), entry.record.get("class_name")
        if name is not None and names.get(index, name) != name:
            found.refusals.append(
                f"the class sets differ: class {index} is {names[index]!r} in the baseline and {name!r} in the "
                "candidate"
            )
            return


def layer_pairing(baseline: Side, candidate: Side) -> tuple[dict[str, str], list[str]]:
    """The candidate's layer names mapped to the baseline's: by name; where the two runs explained other layers
    but as many of them, none in common (two architectures' default layers), by position, with a warning."""
    b_layers, c_layers = baseline.layers, candidate.layers
    if set(b_layers) & set(c_layers) or len(b_layers) != len(c_layers) or not b_layers:
        return {name: name for name in c_layers}, []
    pairs = ", ".join(f"{c} ~ {b}" for b, c in zip(b_layers, c_layers) if b != c)
    return dict(zip(c_layers, b_layers)), [f"the runs explained other layers: paired in order ({pairs})"]


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value)) if all(isinstance(v, int) for v in value) else ",".join(map(str, value))
    return str(value)
