"""The actor pool of a job: how many actors, and what each one asks of the cluster and runs with."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ...errors import UsageError
from ...options import EngineOptions, ModelOptions

# Left free for Ray Data's own tasks (reading a user's dataset, splitting blocks): a pool of
# actors that takes every CPU starves them and the job hangs.
RESERVED_CPUS = 0.5


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and what each one asks of the cluster."""

    actors: int
    cpus: float  # Ray CPUs per actor (scheduling)
    gpus: float  # GPUs per actor
    threads: int  # torch threads in each actor


def plan_pool(engine: EngineOptions) -> PoolPlan:
    """Actors and their resources on the connected cluster.

    Default count: one actor per ``--gpus-per-actor`` GPUs of the cluster, else one. The
    CPUs (less a reserve for Ray Data's own tasks) are shared between the actors, no
    actor asking for more than one node has; each actor runs as many torch threads.
    """
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    gpa = float(engine.gpus_per_actor)
    if gpa and gpus < gpa:
        raise UsageError(f"--gpus-per-actor {engine.gpus_per_actor:g}: the Ray cluster has {gpus:g} GPUs")
    actors = engine.actors or (max(1, int(gpus // gpa)) if gpa else 1)
    node_cpus = max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=cpus)
    share = min(max(cpus - RESERVED_CPUS, 0.0) / actors, max(node_cpus - RESERVED_CPUS, 0.0))
    share = max(round(share, 2), 0.01)
    return PoolPlan(actors=actors, cpus=share, gpus=gpa, threads=max(1, math.floor(share + RESERVED_CPUS)))


def threads_env(threads: int) -> dict:
    """The actor process starts with OpenMP sized as ``threads`` (Ray would set 1 for a fractional CPU
    share, and libraries that size their pools at start, oneDNN's among them, would keep 1)."""
    return {"env_vars": {"OMP_NUM_THREADS": str(threads)}}


def actor_model_options(model: ModelOptions) -> ModelOptions:
    """``--device auto`` in an actor means the GPU Ray gave it, if any: Ray does not hide the
    node's GPUs from an actor without a GPU share, and several such actors would crowd onto one."""
    import ray

    if model.device == "auto" and not ray.get_gpu_ids():
        return replace(model, device="cpu")
    return model


def check_device(device: str, gpus_per_actor: float) -> None:
    """A CUDA device asked for with no GPU share: Ray would give the actors none."""
    if device.startswith("cuda") and not gpus_per_actor:
        raise UsageError(f"--device {device} with --engine ray needs --gpus-per-actor (Ray gives actors their GPUs)")
