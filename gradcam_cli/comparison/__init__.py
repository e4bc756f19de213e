"""Explanation regression testing: ``gradcam compare`` and its verdicts (named ``comparison`` so that
``gradcam_cli.compare`` stays the function).

- ``runs.py``: one side of a comparison, the explanations of a run folder by key; ``checks.py``: whether two runs
  can be compared (refusals and warnings, with the reasons).
- ``metrics.py``: how alike two explanations are; ``pairs.py``: pairing and measuring, the worst pairs kept.
- ``verdict.py``: ``--fail-under`` bounds, parsed and judged (also for ``gradcam evaluate``); ``result.py``: the
  result and its summary; ``junit.py``: JUnit XML; ``outputs.py``: the CSV, ``compare.json`` and pictures.
- ``api.py``: `compare` for two folders. The one-process form (two models on the same photos) is a job:
  ``gradcam_cli.job.compare``.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {"compare": "api", "CompareResult": "result"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy: the CLI imports this package's options for `gradcam --help`, which must not load numpy.
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
