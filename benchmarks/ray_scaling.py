#!/usr/bin/env python
"""The Ray engine against the local engine on the same photos: images/s and the Ray path's overhead.

    .venv/bin/python benchmarks/ray_scaling.py [--photos 200] [--batch-size 8] [--actors 1 2] [--device cpu]

Builds a folder of photos (as benchmarks/endtoend.py does: copies of sample_images/*,
longer side 300-640 px, seeded), loads the default model, then explains the folder
(four PNGs per photo) with:

  * the local engine (``run_job``, this process, the model already loaded);
  * the Ray engine (``run_on_ray``) with 1 and with 2 actors on one local Ray instance,
    started once (as ``gradcam explain --engine ray`` starts it: all of this machine's
    CPUs, the actors sharing them less Ray Data's reserve).

For each Ray run: the wall time of the whole job (actors starting and loading the model
included), the start-up (until an actor begins the first batch), and the rate after it.
The per-image overhead of the Ray path is the 1-actor steady time per image less the
local engine's (same threads, same batches); start-up is a fixed cost per job.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from endtoend import build_folder  # noqa: E402  (the same photo folder as the end-to-end benchmark)


def local_run(items, out: Path, options, model_opts) -> dict:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.job.runner import run_job
    from gradcam_cli.options import JobOptions

    explainer = Explainer.from_options(model_opts, options)
    explainer.explain_arrays([__import__("numpy").zeros((64, 64, 3), "uint8")])  # warm-up, as in a long job
    start = time.perf_counter()
    summary = run_job(explainer, items, out, JobOptions())
    seconds = time.perf_counter() - start
    assert summary.done == len(items), summary
    return {"seconds": seconds, "rate": len(items) / seconds}


def ray_run(items, out: Path, options, model_opts, actors: int, threads: int | None) -> dict:
    from gradcam_cli.job.ray_engine import plan_pool, run_on_ray
    from gradcam_cli.job.ray_explain import ExplainTask
    from gradcam_cli.options import EngineOptions, JobOptions
    from gradcam_cli.output.store import open_folder

    plan = plan_pool(EngineOptions(engine="ray", actors=actors))
    if threads:
        plan = replace(plan, threads=threads)
    task = ExplainTask(model_opts, options, str(out))
    start = time.perf_counter()
    summary = run_on_ray(task, items, open_folder(out), JobOptions(), plan, options.batch_size)
    seconds = time.perf_counter() - start
    assert summary.done == len(items), summary
    return {"seconds": seconds, "rate": len(items) / seconds, "startup": summary.startup_s,
            "steady_rate": len(items) / (seconds - summary.startup_s), "plan": plan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for the local engine and for every actor (default: all CPUs locally, "
                         "each actor its share); 1 keeps a busy machine's timings steady")
    args = ap.parse_args()
    if args.threads:  # before torch is imported: OpenMP and oneDNN size their pools at start
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import ray

    from gradcam_cli.job.inputs import collect_inputs
    from gradcam_cli.job.ray_engine import ray_session
    from gradcam_cli.options import EngineOptions, ExplainOptions, ModelOptions

    options = ExplainOptions(batch_size=args.batch_size)
    model_opts = ModelOptions(device=args.device)
    with tempfile.TemporaryDirectory(prefix="gradcam-ray-bench-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        build_folder(photos, args.photos, args.seed)
        items = collect_inputs([str(photos)])
        print(f"{len(items)} photos, batch size {args.batch_size}, four PNGs each, {os.cpu_count()} CPUs, "
              f"device {args.device}, torch threads {args.threads or 'default'}", flush=True)
        local = local_run(items, Path(tmp) / "local", options, model_opts)
        print(f"local engine:   {local['rate']:6.2f} images/s ({local['seconds']:.1f} s)", flush=True)
        started = time.perf_counter()
        with ray_session(EngineOptions(engine="ray")):
            print(f"Ray instance started in {time.perf_counter() - started:.1f} s "
                  f"({ray.cluster_resources().get('CPU', 0):g} CPUs)", flush=True)
            for n in args.actors:
                r = ray_run(items, Path(tmp) / f"ray{n}", options, model_opts, n, args.threads)
                p = r["plan"]
                print(f"ray, {n} actor{'s' if n > 1 else ' '}: {r['rate']:6.2f} images/s ({r['seconds']:.1f} s; "
                      f"actors working after {r['startup']:.1f} s, then {r['steady_rate']:.2f} images/s; "
                      f"{p.cpus:g} CPUs and {p.threads} threads per actor)", flush=True)
                if n == 1:
                    overhead = 1000 * (1 / r["steady_rate"] - 1 / local["rate"])
                    print(f"per-image overhead of the Ray path (1 actor, steady): {overhead:+.1f} ms "
                          f"({1000 / local['rate']:.1f} ms per image locally)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
