"""The HTML report of an output folder (``gradcam report``, ``--report``): ``index.html`` from its manifests.

- ``build.py``: the rows from the manifests, the thumbnails, the page (Jinja2) and its data script.
- ``links.py``: every URL the page uses, made from file names as encoded relative paths of the folder's own
  files, never a scheme or a way out of the folder.
- ``templates/``: the page, its script and its style.
"""

from .build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
