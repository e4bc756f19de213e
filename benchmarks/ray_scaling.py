#!/usr/bin/env python
"""The Ray engine against the local engine on the same photos: images/s and the Ray path's overhead.

    .venv/bin/python benchmarks/ray_scaling.py [--photos 200] [--batch-size 8] [--actors 1 2] [--device cpu]

Builds a folder of photos (as benchmarks/endtoend.py does: copies of sample_images/*,
longer side 300-640 px, seeded), loads the default model, then explains the folder
(four PNGs per photo) with:

  * the local engine (``run_explain``, the model already loaded), in a process of its own
    session: on a shared Linux host (CFS autogroups) each session gets its own CPU share,
    and Ray's workers run in one of their own, so this keeps the comparison fair;
  * the Ray engine (``run_on_ray``) with 1 and with 2 actors on one local Ray instance,
    started once (as ``gradcam explain --engine ray`` starts it: all of this machine's
    CPUs, the actors sharing them less Ray Data's reserve).

For each Ray run: the wall time of the whole job (actors starting and loading the model
included), the start-up (until an actor begins the first batch), and the rate after it.
The per-image overhead of the Ray path is measured on its own: the same job with a task
that does no work (one record per image, nothing read or written), 1 actor, ``--null
-photos`` rows; its time after start-up over the rows is what streaming paths to an actor
and records back costs per image. Start-up is a fixed cost per job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
from endtoend import build_folder  # noqa: E402  (the same photo folder as the end-to-end benchmark)


def local_run(photos: Path, out: Path, args) -> dict:
    """The local engine's job, timed in a child process in a session of its own."""
    cmd = [
        sys.executable,
        __file__,
        "--local-job",
        str(photos),
        str(out),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
    ] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True, env=dict(os.environ))
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def local_job(photos: Path, out: Path, options, model_opts) -> dict:
    from gradcam_cli.allocator import keep_freed_memory
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.explain import run_explain
    from gradcam_cli.options import JobOptions

    keep_freed_memory()  # as the gradcam command does at start
    items = collect_inputs([str(photos)])
    explainer = Explainer.from_options(model_opts, options)
    explainer.explain_arrays([__import__("numpy").zeros((64, 64, 3), "uint8")])  # warm-up, as in a long job
    start = time.perf_counter()
    summary = run_explain(explainer, items, out, JobOptions())
    seconds = time.perf_counter() - start
    assert summary.done == len(items), summary
    return {"seconds": seconds, "rate": len(items) / seconds}


def ray_run(items, out: Path, options, model_opts, actors: int, threads: int | None) -> dict:
    from gradcam_cli.io.manifest import Manifest
    from gradcam_cli.job.bookkeeper import Bookkeeper
    from gradcam_cli.job.explain import ExplainTask
    from gradcam_cli.job.ray.executor import run_on_ray
    from gradcam_cli.job.ray.pool import plan_pool
    from gradcam_cli.options import EngineOptions

    plan = plan_pool(EngineOptions(engine="ray", actors=actors))
    if threads:
        plan = replace(plan, threads=threads)
    task = ExplainTask(model_opts, options, str(out))
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    book = Bookkeeper(len(items), Manifest(out / "results.jsonl").open())
    run_on_ray(task, items, book, plan, batch_size=options.batch_size)
    summary = book.close()
    seconds = time.perf_counter() - start
    assert summary.done == len(items), summary
    return {
        "seconds": seconds,
        "rate": len(items) / seconds,
        "startup": summary.startup_s,
        "steady_rate": len(items) / (seconds - summary.startup_s),
        "plan": plan,
    }


class NullTask:
    """A task that does nothing: one small record per input (the Ray path's own cost)."""

    device = "cpu"

    def __call__(self):
        return self

    def skip(self, item) -> bool:
        return False

    def decode(self, item, data=None):
        from gradcam_cli.job.task import Decoded

        return Decoded(item)

    def run(self, batch, writers) -> list:
        from gradcam_cli.job.task import Outcome

        return [Outcome(0, [{"input": d.item.path}]) for d in batch]


def null_run(count: int, batch_size: int) -> dict:
    import ray.cloudpickle

    from gradcam_cli.io.inputs import InputImage
    from gradcam_cli.job.bookkeeper import Bookkeeper
    from gradcam_cli.job.ray.executor import run_on_ray
    from gradcam_cli.job.ray.pool import PoolPlan

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this script
    items = [InputImage(f"photo{i}.jpg", PurePosixPath(f"photo{i}.jpg")) for i in range(count)]
    start = time.perf_counter()
    book = Bookkeeper(len(items), None)
    run_on_ray(NullTask(), items, book, PoolPlan(1, 1.0, 0.0, 1), batch_size=batch_size)
    summary = book.close()
    seconds = time.perf_counter() - start
    assert summary.done == count, summary
    return {"per_image_ms": 1000 * (seconds - summary.startup_s) / count, "startup": summary.startup_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-photos", type=int, default=2000, help="rows for the no-work job (the Ray path's cost)")
    ap.add_argument("--local-job", nargs=2, type=Path, metavar=("PHOTOS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the local engine and for every actor (default: all CPUs locally, "
        "each actor its share); 1 keeps a busy machine's timings steady",
    )
    args = ap.parse_args()
    if args.threads:  # before torch is imported: OpenMP and oneDNN size their pools at start
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import ray

    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.ray.session import ray_session
    from gradcam_cli.options import EngineOptions, ExplainOptions, ModelOptions

    options = ExplainOptions(batch_size=args.batch_size)
    model_opts = ModelOptions(device=args.device)
    if args.local_job:
        print(json.dumps(local_job(*args.local_job, options, model_opts)))
        return 0
    with tempfile.TemporaryDirectory(prefix="gradcam-ray-bench-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        build_folder(photos, args.photos, args.seed)
        items = collect_inputs([str(photos)])
        print(
            f"{len(items)} photos, batch size {args.batch_size}, four PNGs each, {os.cpu_count()} CPUs, "
            f"device {args.device}, torch threads {args.threads or 'default'}",
            flush=True,
        )
        local = local_run(photos, Path(tmp) / "local", args)
        print(f"local engine:   {local['rate']:6.2f} images/s ({local['seconds']:.1f} s)", flush=True)
        started = time.perf_counter()
        with ray_session(EngineOptions(engine="ray")):
            print(
                f"Ray instance started in {time.perf_counter() - started:.1f} s "
                f"({ray.cluster_resources().get('CPU', 0):g} CPUs)",
                flush=True,
            )
            for n in args.actors:
                r = ray_run(items, Path(tmp) / f"ray{n}", options, model_opts, n, args.threads)
                p = r["plan"]
                print(
                    f"ray, {n} actor{'s' if n > 1 else ' '}: {r['rate']:6.2f} images/s ({r['seconds']:.1f} s; "
                    f"actors working after {r['startup']:.1f} s, then {r['steady_rate']:.2f} images/s; "
                    f"{p.cpus:g} CPUs and {p.threads} threads per actor)",
                    flush=True,
                )
            null = null_run(args.null_photos, args.batch_size)
            print(
                f"per-image overhead of the Ray path: {null['per_image_ms']:.2f} ms "
                f"(a no-work task on {args.null_photos} rows, batches of {args.batch_size}, 1 actor; "
                f"{1000 / local['rate']:.1f} ms per image of work locally)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
