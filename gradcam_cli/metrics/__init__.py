"""How good the maps are, against ground-truth boxes and the model itself.

- ``annotations.py``: ground-truth boxes from a CSV, Pascal VOC XML files or a COCO JSON.
- ``localisation.py``: boxes from maps against ground truth (IoU, MaxBoxAcc, pointing game).
- ``faithfulness.py``: perturbation curves (deletion/insertion, ROAD, Average Drop), batched by step.
- ``sanity.py``: cascading model randomisation on a copy of the model.
- ``measure.py``: one batch's samples measured; the sanity check's passes.
- ``report.py``: the per-method summaries, CSV and JSON; ``plots.py``: the PNG plots (matplotlib, imported
  only there). The pass over the images is a job (``gradcam_cli.job.evaluate``).
"""
