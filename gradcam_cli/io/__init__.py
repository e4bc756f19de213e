"""Images in and records out, for the jobs and the Python API alike.

- ``inputs.py``: arguments (files, folders, globs, stdin) to the list of inputs, and each
  input's distinct output location and name.
- ``formats.py`` and ``images.py``: which files are images; decoding one safely into RGB.
- ``records.py``: the JSON record of one explanation (``record.schema.json``).
- ``manifest.py``: ``results.jsonl``, merged over runs, journalled as images finish, locked.
"""
