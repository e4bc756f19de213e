"""What a map explains, behind one extension point (as the methods are behind theirs).

A target is a differentiable scalar per image computed from the model's output (``base.py``
says how: its slots, and the score of each slot on any output). Each target is a file in this
package and one line in `TARGETS`; the command line picks one from its flags (`target_name`).
This module imports nothing heavy, so requests are checked before torch loads; a target's own
file is imported when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from ..model.tasks import CLASSIFIER, DETECTOR, EMBEDDING, SEGMENTER


@dataclass(frozen=True)
class TargetInfo:
    name: str
    title: str
    score: str  # what the explained scalar is
    models: tuple[str, ...]  # the kinds of model it applies to
    module: str  # its file in this package
    implementation: str  # its class there
    selected_by: str  # the flags that choose it

    def load(self) -> type:
        return getattr(import_module(f".{self.module}", __name__), self.implementation)


TARGETS: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo(
            "class",
            "Class logit",
            "the pre-softmax score y^c",
            (CLASSIFIER,),
            "class_logit",
            "ClassLogit",
            "default; --target class",
        ),
        TargetInfo(
            "probability",
            "Class probability",
            "softmax(y)_c",
            (CLASSIFIER,),
            "probability",
            "SoftmaxProbability",
            "--target probability",
        ),
        TargetInfo(
            "contrastive",
            "Class A rather than class B",
            "y^A - y^B",
            (CLASSIFIER,),
            "contrastive",
            "Contrastive",
            "--versus CLASS|auto",
        ),
        TargetInfo(
            "sigmoid",
            "Multi-label and binary heads",
            "y^c of each label above the threshold; +-y of a one-output head",
            (CLASSIFIER,),
            "multilabel",
            "SigmoidLabels",
            "--head sigmoid, a --labels file that declares it, or a 1-output head",
        ),
        TargetInfo(
            "similarity",
            "Similarity to a reference",
            "cos(e(x), e(reference)) of the embeddings",
            (CLASSIFIER, EMBEDDING),
            "similarity",
            "Similarity",
            "--similar-to FILE",
        ),
        TargetInfo(
            "detection",
            "Detections",
            "IoU + score of the detection matching the box",
            (DETECTOR,),
            "detection",
            "DetectionScore",
            "a detector (--model fasterrcnn_resnet50_fpn, ...)",
        ),
        TargetInfo(
            "segmentation",
            "Segments",
            "the class's logits summed over its predicted mask",
            (SEGMENTER,),
            "segmentation",
            "SegmentClass",
            "a segmenter (--model deeplabv3_resnet50, ...)",
        ),
    )
}
CHOICES = ("class", "probability")  # what --target names; the others follow from their own flags
HEADS = ("auto", "softmax", "sigmoid")


def target_name(kind: str, *, target: str = "class", versus=None, head: str = "auto", similar_to=None) -> str:
    """The target a request means, for a model of ``kind`` (`CLASSIFIER`, `DETECTOR`, ...)."""
    if kind == DETECTOR:
        return "detection"
    if kind == SEGMENTER:
        return "segmentation"
    if similar_to is not None:
        return "similarity"
    if versus is not None:
        return "contrastive"
    if head == "sigmoid":
        return "sigmoid"
    return target


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (photo pixels, x1/y1 exclusive) -> four numbers, ``x0 < x1`` and ``y0 < y1``."""
    from ..errors import UsageError

    try:
        x0, y0, x1, y1 = (float(part) for part in str(text).split(","))
    except ValueError:
        raise UsageError(f"--box {text}: expected x0,y0,x1,y1 in the photo's pixels, e.g. 10,20,200,180") from None
    if not (x0 < x1 and y0 < y1):
        raise UsageError(f"--box {text}: needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def check_options(options) -> None:
    """The checks of the target options that need no model (``ExplainOptions.validate``)."""
    from ..errors import UsageError

    custom = not isinstance(options.target, str)
    if custom and not callable(options.target):
        raise UsageError(f"target: a name ({', '.join(CHOICES)}), a Target or a function, not {options.target!r}")
    if not custom and options.target not in CHOICES:
        raise UsageError(f"--target {options.target}: unknown; choose from {', '.join(CHOICES)}")
    if options.head not in HEADS:
        raise UsageError(f"--head {options.head}: unknown; choose from {', '.join(HEADS)}")
    _check_ranges(options)
    for box in options.boxes:
        parse_box(box)
    conflicts = [
        (options.versus is not None and options.target == "probability", "--versus and --target probability"),
        (options.versus is not None and options.head == "sigmoid", "--versus and --head sigmoid"),
        (options.similar_to is not None and options.versus is not None, "--similar-to and --versus"),
        (options.similar_to is not None and options.head == "sigmoid", "--similar-to and --head sigmoid"),
        (options.similar_to is not None and bool(options.classes), "--similar-to and --class"),
        (options.similar_to is not None and options.top_k != 1, "--similar-to and --top-k"),
        (options.similar_to is not None and options.target == "probability", "--similar-to and --target probability"),
        (custom and options.versus is not None, "a target of your own and --versus"),
        (custom and options.similar_to is not None, "a target of your own and --similar-to"),
    ]
    clash = next((text for found, text in conflicts if found), None)
    if clash:
        raise UsageError(f"{clash} conflict: each says what to explain; give one")
    _check_similar_to(options.similar_to)
    named = target_name(CLASSIFIER, **_choice(options)) if not custom else "custom"
    if "cam" in options.methods and named != "class":
        raise UsageError(f"--method cam: its classifier weights explain the class logit, not the {named} target")


def check_declared_head(kind: str, declared: str | None, options, labels_path) -> None:
    """A sigmoid head that the ``--labels`` file declares (``--head auto``) against the rest of the request: what
    ``--head sigmoid`` would refuse is refused, naming the file, since the user never typed the flag."""
    from ..errors import UsageError

    if declared != "sigmoid" or options.head != "auto":
        return
    clash = next(
        (
            flag
            for flag, found in (
                (f"a {kind}", kind in (DETECTOR, SEGMENTER)),
                ("--versus", options.versus is not None and options.similar_to is None),
                ("--method cam", "cam" in options.methods and options.similar_to is None),
            )
            if found
        ),
        None,
    )
    if clash:
        raise UsageError(
            f"--labels {labels_path}: declares a sigmoid (multi-label) head, which {clash} cannot take; "
            "give --head softmax to treat the model as a softmax classifier"
        )


def _check_ranges(options) -> None:
    from ..errors import UsageError

    if not 0.0 < options.label_threshold < 1.0:
        raise UsageError(f"--label-threshold {options.label_threshold}: must be between 0 and 1")
    if not 0.0 <= options.score_threshold <= 1.0:
        raise UsageError(f"--score-threshold {options.score_threshold}: must be between 0 and 1")
    if options.max_detections < 1:
        raise UsageError(f"--max-detections {options.max_detections}: must be at least 1")


def _check_similar_to(path) -> None:
    import os

    from ..errors import UsageError

    if path is None:
        return
    if not str(path).strip():
        raise UsageError("--similar-to: give the reference photo's file")
    if not os.path.isfile(path):
        raise UsageError(f"--similar-to {path}: no such file")


def _choice(options) -> dict:
    return {"target": options.target, "versus": options.versus, "head": options.head, "similar_to": options.similar_to}


def check_evaluable(kind: str, measure=None) -> None:
    """``gradcam evaluate`` measures the maps of classifiers, and a detector's (one sample per annotated object)
    with the box metrics and the pointing game; a segmenter's are not measured yet."""
    from ..errors import UsageError

    if kind == SEGMENTER:
        raise UsageError(f"gradcam evaluate: measures the maps of classifiers and detectors; a {kind}'s are not yet")
    if kind == DETECTOR and measure is not None:
        # Faithfulness reads class probabilities of perturbed copies, and the sanity check explains by class on
        # randomised copies, whose detections are not the trained model's: neither has a detector's form yet.
        for flag, given in (("--faithfulness", measure.faithfulness), ("--sanity", measure.sanity)):
            if given:
                raise UsageError(f"gradcam evaluate {flag}: does not apply to a detector (box metrics only)")


def check_for_model(kind: str, options) -> None:
    """The target options against the kind of model (`model.tasks.model_kind`), before it is built."""
    from ..errors import UsageError

    what = {DETECTOR: "a detector", SEGMENTER: "a segmenter", EMBEDDING: "an embedding model (--num-classes 0)"}
    if kind == EMBEDDING and options.similar_to is None and isinstance(options.target, str):
        raise UsageError(
            "--num-classes 0: the model returns embeddings, not class scores; explain them with --similar-to FILE"
        )
    if kind in (DETECTOR, SEGMENTER):
        given = [
            flag
            for flag, found in (
                ("--versus", options.versus is not None),
                ("--similar-to", options.similar_to is not None),
                ("--head sigmoid", options.head == "sigmoid"),
                ("--target probability", options.target == "probability"),
                ("--top-k", options.top_k != 1),
                ("--method cam", "cam" in options.methods),
                ("--smooth aug", options.smooth == "aug"),
            )
            if found
        ]
        if kind == SEGMENTER and options.boxes:
            given.insert(0, "--box")
        if given:
            name = "detection" if kind == DETECTOR else "segmentation"
            raise UsageError(f"{given[0]}: does not apply to {what[kind]}, whose maps explain its {name} target")
    elif options.boxes:
        raise UsageError("--box: applies to detectors only (--model fasterrcnn_resnet50_fpn, ...)")
