"""Runs ``gradcam`` commands for the documentation tour, each in a process of its own forked from this one.

The ``gradcam`` command spends 3 to 4 of its first seconds importing torch, torchvision and timm; the tour runs some
sixty commands. This server imports them once, as the command's start does (OpenMP's wait policy set first), and
never runs a tensor operation itself, so that each forked child starts as a fresh process would after its imports:
its own memory, threads, allocator settings, working directory, standard streams and exit status.

Protocol, one JSON object per line: in ``{"argv": [...], "cwd": ..., "stdout": file, "stderr": file}``, out
``{"returncode": n}`` (a child killed by a signal: minus its number, as ``subprocess`` reports it).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

HEAVY = ("torch", "torchvision", "timm", "gradcam_cli.cli", "gradcam_cli.explainer", "gradcam_cli.job.evaluate")


def run_child(request: dict) -> None:
    """In the forked child: the command, with its streams on the request's files; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = ["gradcam", *request["argv"]]
        from gradcam_cli.cli import main

        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `gradcam` sets it, before torch loads
    for name in HEAVY:
        __import__(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"returncode": code}), flush=True)


if __name__ == "__main__":
    serve()
