"""The Ray executor (``--engine ray``): a job's batches on the actors of a Ray cluster.

- ``session.py``: connecting to a cluster, or starting a Ray instance here, with Ray's own
  messages kept off the terminal.
- ``pool.py``: how many actors, and the CPUs, GPUs and threads each one gets.
- ``actor.py``: the actor (the task's worker, loaded once) and a ledger actor that knows which
  images started and finished; outcomes travel back as columns.
- ``executor.py``: the driver: inputs as a dataset of rows, outcomes back in input order to the
  job's bookkeeper, retries and Ctrl-C.
"""
