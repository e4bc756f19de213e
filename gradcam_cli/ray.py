"""Explanations of a Ray Dataset, for users who already hold one (read from Parquet, S3, a catalogue).

    import ray
    from gradcam_cli.ray import explain_dataset

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)   # columns: bytes, path
    records = explain_dataset(ds, "resnet50", output_dir="s3://bucket/cams/", actors=4, gpus_per_actor=1)
    records.write_parquet("s3://bucket/cams-records/")

Each row needs a ``path`` column (a local path, a path on a shared filesystem, or a URI
pyarrow can read); with a ``bytes`` column those bytes are decoded instead of reading
the path. Outputs mirror each path below ``output_dir`` (``s3://bucket/a/cat.jpg`` ->
``OUT/bucket/a/cat_gradcam_..._heatmap.png``); ``output_dir=None`` writes no file. The
result has one row per record (the ``--json`` record), with the same columns on every
row: an image that failed has ``error`` set, one whose outputs exist (``skip_existing``)
has ``skipped`` true.

Requires the ``ray`` extra: ``pip install "gradcam-cli[ray]"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .options import EngineOptions, ExplainOptions, ModelOptions
from .output.files import KINDS


def explain_dataset(
    ds,
    model: str | None = None,
    *,
    output_dir: str | None = None,
    filesystem=None,
    methods: Sequence[str] = ("gradcam",),
    layers: Sequence[str] = (),
    classes: Sequence[str | int] = (),
    top_k: int = 1,
    outputs: Sequence[str] = KINDS,
    options: ExplainOptions | None = None,
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
    workers: int = 2,
    skip_existing: bool = False,
    **load_options,
):
    """A ``ray.data.Dataset`` of records: ``ds``'s images explained by a pool of actors, each loading the model once.

    ``model`` and ``load_options`` are as for `gradcam_cli.explain` given a name
    (``pretrained``, ``weights``, ``num_classes``, ``labels``, ``device``, ...); the
    model is loaded in every actor, so a weights file must be readable there.
    ``output_dir``: a folder (shared by the workers) or a URI, or a path on
    ``filesystem`` (a pyarrow filesystem). ``options`` overrides the keyword options
    wholesale. Lazy, like every Ray Dataset: nothing runs until it is consumed.
    """
    import ray

    from .job.explain import ExplainTask
    from .job.ray.executor import map_with_actors
    from .job.ray.pool import check_device, plan_pool

    opts = options or ExplainOptions(
        methods=tuple(methods), layers=tuple(layers), classes=tuple(classes), top_k=top_k, outputs=tuple(outputs)
    )
    model_opts = ModelOptions(name=model, **load_options)
    engine = EngineOptions(engine="ray", actors=actors, gpus_per_actor=gpus_per_actor)
    for checked in (opts, model_opts, engine):
        checked.validate()
    check_device(model_opts.device, gpus_per_actor)
    if not ray.is_initialized():
        ray.init()
    task = ExplainTask(model_opts, opts, None if output_dir is None else str(output_dir), filesystem, skip_existing)
    return map_with_actors(ds, task, plan_pool(engine), opts.batch_size, output="records", workers=workers)
