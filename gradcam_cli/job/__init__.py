"""Jobs over many images: tasks say what is done with a batch, executors say where it runs.

- ``task.py``: the task protocol. A task is a picklable factory; called once in each process
  that works (this one, or every Ray actor), it loads the model and returns a *worker* that
  decodes an input, runs a batch and gives one `Outcome` per input.
- ``explain.py`` (`ExplainTask`: pictures and records) and ``evaluate.py``
  (`EvaluateTask`: measurements against ground truth) are the tasks.
- ``bookkeeper.py``: what happens to every outcome, in input order, whatever the executor:
  counts, the manifest, records streamed, progress, ``--fail-fast``.
- ``local.py`` (threads in this process) and ``ray/`` (actors on a Ray cluster) are the
  executors; ``run.py`` picks one (``--engine``).
"""
