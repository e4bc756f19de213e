"""``--engine ray`` and ``gradcam_cli.ray``: the local engine's files and records, from actors on a Ray cluster.

One local Ray instance with 2 CPUs serves the whole file (starting one costs seconds);
the CLI runs join it with ``--ray-address``. Inputs are small.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import torch
from PIL import Image

from gradcam_cli.options import EngineOptions

from helpers import ROOT, SAMPLES, jsonl


def env(**extra) -> dict:
    # Taken when a command starts: ray.init sets RAY_AUTH_MODE, which a process joining the cluster needs too.
    return dict(os.environ, HF_HUB_OFFLINE="1", **extra)


def _has_ray() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _has_ray(), reason='Ray Data is not installed: pip install -e ".[test,ray]"')


@pytest.fixture(scope="module")
def ray_address():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def gradcam(*args, extra_env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gradcam_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**(extra_env or {})),
        **kw,
    )


def photo_folder(root: Path, count: int, size=(120, 90)) -> Path:
    """``count`` small photos in two folders (same names in both), made from the samples."""
    sources = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    for i in range(count):
        folder = root / f"set{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(sources[i % len(sources)]) as im:
            im.convert("RGB").resize(size).save(folder / f"img{i // 2:02d}.jpg", quality=90)
    return root


def tiny_model(tmp_path: Path) -> list:
    """CLI flags for timm's tiny test EfficientNet with one set of random weights, saved to a file: every process
    (the local run, the driver, each actor) loads the same model, in a fraction of Lite0's time."""
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "weights.safetensors"
    if not weights.exists():
        torch.manual_seed(0)
        save_file(timm.create_model("test_efficientnet").state_dict(), weights)
    return ["--model", "test_efficientnet", "--weights", weights]


def without_timing(record: dict, root: Path) -> dict:
    """A record with the time left out and the files relative to their output folder."""
    out = {k: v for k, v in record.items() if k != "time_s"}
    if "files" in out:
        out["files"] = {k: str(Path(v).relative_to(root)) for k, v in out["files"].items()}
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def no_partial_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_engine_flags_are_checked_without_ray(tmp_path):
    from gradcam_cli.errors import UsageError

    for bad in (
        EngineOptions(actors=2),
        EngineOptions(ray_address="h:6379"),
        EngineOptions(engine="dask"),
        EngineOptions(engine="ray", actors=0),
        EngineOptions(engine="ray", gpus_per_actor=-1),
    ):
        with pytest.raises(UsageError):
            bad.validate()
    out = gradcam("explain", SAMPLES / "cat.png", "-o", tmp_path, "--actors", "2")
    assert out.returncode == 2 and "--actors: applies to --engine ray only" in out.stderr
    if _has_ray():
        out = gradcam("explain", SAMPLES / "cat.png", "-o", tmp_path, "--engine", "ray", "--device", "cuda")
        assert out.returncode == 2 and "needs --gpus-per-actor" in out.stderr


def test_engine_ray_without_ray_installed_is_a_usage_error(tmp_path):
    argv = ["gradcam", "explain", str(SAMPLES / "cat.png"), "-o", str(tmp_path), "--engine", "ray"]
    probe = f"import sys; sys.modules['ray'] = None; from gradcam_cli.cli import main; sys.argv = {argv!r}; main()"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env())
    assert out.returncode == 2, out.stderr
    assert 'pip install "gradcam-cli[ray]"' in out.stderr and "Traceback" not in out.stderr


@needs_ray
def test_without_an_address_a_ray_instance_of_its_own_runs_the_job(tmp_path):
    """The embedded default, as on a laptop: no cluster to join (this test runs before the file's shared instance)."""
    src = photo_folder(tmp_path / "photos", 2)
    environment = {k: v for k, v in env().items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam_cli",
            "explain",
            src,
            "-r",
            "--json",
            "--outputs",
            "heatmap",
            "-o",
            tmp_path / "out",
            "--engine",
            "ray",
            "--device",
            "cpu",
            *tiny_model(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    records = jsonl(done.stdout)
    assert sorted(Path(r["input"]).relative_to(src).as_posix() for r in records) == ["set0/img00.jpg", "set1/img00.jpg"]
    assert all(Path(r["files"]["heatmap"]).is_file() for r in records)
    assert "2 done, 0 skipped, 0 failed of 2" in done.stderr and "Traceback" not in done.stderr


@needs_ray
def test_ray_engine_writes_the_local_engines_files_and_records(tmp_path, ray_address):
    src = photo_folder(tmp_path / "photos", 4)  # with the two failures: 3 batches of 2 over the 2 actors
    (src / "set1" / "broken.jpg").write_bytes((src / "set0" / "img00.jpg").read_bytes()[:300])
    missing = tmp_path / "photos" / "missing.png"
    common = [
        "explain",
        src,
        missing,
        "-r",
        "--json",
        "-b",
        "2",
        "--save-raw",
        "--device",
        "cpu",
        *tiny_model(tmp_path),
    ]
    # One torch thread on both sides: the same arithmetic, so the same bits.
    local = gradcam(*common, "-o", tmp_path / "local", extra_env={"OMP_NUM_THREADS": "1"})
    ray_run = gradcam(*common, "-o", tmp_path / "ray", "--engine", "ray", "--ray-address", ray_address, "--actors", "2")
    assert local.returncode == ray_run.returncode == 1, ray_run.stderr
    summary = "4 done, 0 skipped, 2 failed of 6"
    assert summary in local.stderr and summary in ray_run.stderr
    assert "Traceback" not in ray_run.stderr
    # The same records, in the same (input) order, on stdout and in results.jsonl.
    for out_dir, text in ((tmp_path / "local", local.stdout), (tmp_path / "ray", ray_run.stdout)):
        assert jsonl((out_dir / "results.jsonl").read_text()) == jsonl(text)
    local_records = [without_timing(r, tmp_path / "local") for r in jsonl(local.stdout)]
    ray_records = [without_timing(r, tmp_path / "ray") for r in jsonl(ray_run.stdout)]
    assert ray_records == local_records
    errors = {Path(r["input"]).name: r["error"] for r in ray_records if "error" in r}
    assert set(errors) == {"broken.jpg", "missing.png"} and "no such file" in errors["missing.png"]
    # Byte-identical files: PNGs and raw maps.
    local_files, ray_files = tree(tmp_path / "local"), tree(tmp_path / "ray")
    for made_by_the_run in ("results.jsonl", "run.json"):  # run.json says when and with which engine
        local_files.pop(made_by_the_run), ray_files.pop(made_by_the_run)
    # Per image: the four PNGs, and with --save-raw the map's and the guided image's .npy.
    assert len(ray_files) == 4 * 6 and ray_files == local_files


def _actor_pids_of_this_ray() -> list[int]:
    """Ray Data actors (``ray::MapWorker``) of the Ray instance this test process started."""
    mine = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                continue
            pid = int(entry.name)
            while pid > 1 and pid != os.getpid():  # walk up to this process, or to init
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid == os.getpid():
                mine.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return mine


def _start(args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gradcam_cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def _first_record(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return line


def _rest(proc: subprocess.Popen) -> tuple[str, str]:
    """The rest of stdout (read through the same buffer as the first line), and stderr, once it exits."""
    rest = proc.stdout.read()
    stderr = proc.stderr.read()  # a few lines: it cannot fill the pipe while stdout is read
    proc.wait(timeout=60)
    return rest, stderr


@needs_ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the actor processes through /proc")
def test_a_killed_actor_is_replaced_and_no_image_is_lost_or_duplicated(tmp_path, ray_address):
    src = photo_folder(tmp_path / "photos", 24, size=(160, 120))  # the pictures are made at the photo's size
    out = tmp_path / "out"
    proc = _start(
        [
            "explain",
            src,
            "-r",
            "-o",
            out,
            "--json",
            "--engine",
            "ray",
            "--ray-address",
            ray_address,
            "--actors",
            "2",
            "-b",
            "4",
            *tiny_model(tmp_path),
        ]
    )
    first = "".join(_first_record(proc) for _ in range(8))  # two batches in: both actors are working
    victims = _actor_pids_of_this_ray()
    assert victims, "no actor process found"
    os.kill(victims[0], signal.SIGKILL)
    rest, stderr = _rest(proc)
    assert proc.returncode == 0, stderr
    records = jsonl(first + rest)
    inputs = [r["input"] for r in records]
    assert sorted(inputs) == sorted(str(p) for p in src.rglob("*.jpg"))  # each image once: none lost, none twice
    assert jsonl((out / "results.jsonl").read_text()) == records
    assert all(Path(f).is_file() for r in records for f in r["files"].values())
    assert no_partial_files(out)
    retried = int(stderr.split(" retried after a worker died")[0].rsplit("(", 1)[1]) if "retried" in stderr else 0
    assert "24 done, 0 skipped, 0 failed of 24" in stderr and retried in (0, 4, 8), stderr  # 0: it was between batches


@dataclass
class DiesOnce:
    """A task whose worker kills its own actor in the middle of the batch holding image 5: once, or always."""

    marker: str
    always: bool = False

    def __call__(self):
        return DyingWorker(self)


class DyingWorker:
    device = "cpu"

    def __init__(self, task: DiesOnce) -> None:
        self.task = task

    def skip(self, item) -> bool:
        return False

    def decode(self, item, data=None):
        from gradcam_cli.job.task import Decoded

        return Decoded(item)

    def run(self, batch, writers) -> list:
        from gradcam_cli.job.task import Outcome

        if any(d.item.path == "img5.png" for d in batch) and (self.task.always or not os.path.exists(self.task.marker)):
            Path(self.task.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return [Outcome(0, [{"input": d.item.path, "pid": os.getpid()}]) for d in batch]


@needs_ray
@pytest.mark.parametrize("always", [False, True], ids=["dies-once", "dies-again"])
def test_the_batch_of_a_dead_actor_is_retried_once_then_reported(tmp_path, ray_address, always):
    import ray.cloudpickle
    from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

    from gradcam_cli.io.inputs import InputImage
    from gradcam_cli.io.manifest import Manifest
    from gradcam_cli.job.bookkeeper import Bookkeeper
    from gradcam_cli.job.ray.executor import run_on_ray
    from gradcam_cli.job.ray.pool import PoolPlan
    from gradcam_cli.output.store import open_folder

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    items = [InputImage(f"img{i}.png", PurePosixPath(f"img{i}.png")) for i in range(16)]
    plan = PoolPlan(actors=2, cpus=0.5, gpus=0, threads=1)
    records = []
    (tmp_path / "store").mkdir()
    files, root = open_folder("out", SubTreeFileSystem(str(tmp_path / "store"), LocalFileSystem()))  # the manifest too
    book = Bookkeeper(len(items), Manifest(root / "results.jsonl", files).open(), on_record=records.append)
    run_on_ray(DiesOnce(str(tmp_path / "died"), always), items, book, plan, batch_size=4)
    summary = book.close()
    assert jsonl((tmp_path / "store" / "out" / "results.jsonl").read_text()) == records
    assert summary.retried == 4 and any(a["restarted"] for a in summary.actors)  # the batch of images 4-7, once
    if not always:
        assert [r["input"] for r in records] == [it.path for it in items]  # each once, in input order
        assert summary.done == 16 and summary.failed == 0
        assert {r["pid"] for r in records[4:8]} <= {a["pid"] for a in summary.actors if a["restarted"]}
    else:  # its retry died too: those images are error records, the job goes on
        lost = [r for r in records if "error" in r]
        assert sorted(r["input"] for r in records) == sorted(it.path for it in items)
        assert [r["input"] for r in lost] == [f"img{i}.png" for i in range(4, 8)]
        assert all("died, twice" in r["error"] for r in lost) and summary.done == 12 and summary.failed == 4


@needs_ray
def test_interrupt_leaves_complete_files_and_skip_existing_resumes(tmp_path, ray_address):
    photos = 24  # one at a time: the first record comes while 23 are still to do
    src = photo_folder(tmp_path / "photos", photos, size=(160, 120))
    out = tmp_path / "out"
    args = [
        "explain",
        src,
        "-r",
        "-o",
        out,
        "--json",
        "--engine",
        "ray",
        "--ray-address",
        ray_address,
        "--actors",
        "1",
        "--outputs",
        "heatmap,overlay",
        *tiny_model(tmp_path),
    ]
    proc = _start(args)
    first = _first_record(proc)
    proc.send_signal(signal.SIGINT)
    rest, stderr = _rest(proc)
    assert proc.returncode == 130 and "(interrupted)" in stderr, stderr
    done = jsonl(first + rest)
    assert 1 <= len(done) < photos
    assert no_partial_files(out)
    written = {p for p in out.rglob("*.png")}
    assert written == {Path(f) for r in done for f in r["files"].values()}  # every file has its record
    resumed = gradcam(*args, "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{photos - len(done)} done, {len(done)} skipped, 0 failed of {photos}" in resumed.stderr
    manifest = jsonl((out / "results.jsonl").read_text())
    assert sorted(r["input"] for r in manifest) == sorted(str(p) for p in src.rglob("*.jpg"))


@needs_ray
def test_explain_dataset_on_paths_and_bytes_to_a_pyarrow_filesystem(tmp_path, ray_address):
    import ray
    from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

    from gradcam_cli import explain
    from gradcam_cli.ray import explain_dataset

    photos = [SAMPLES / "cat.png", SAMPLES / "hot_dog.jpg"]
    (tmp_path / "store").mkdir()
    store = SubTreeFileSystem(str(tmp_path / "store"), LocalFileSystem())  # any pyarrow filesystem: no local shortcut
    paths = ray.data.from_items([{"path": str(p)} for p in photos] + [{"path": str(tmp_path / "nope.png")}])
    records = explain_dataset(paths, output_dir="cams", filesystem=store, outputs=("heatmap",), actors=1).take_all()
    by_name = {Path(r["input"]).name: r for r in records}
    assert by_name["nope.png"]["error"].endswith("no such file") and by_name["nope.png"]["files"] is None
    expected = {r.source: r.records[0] for r in explain(None, [str(p) for p in photos])}
    for photo in photos:
        r = by_name[photo.name]
        assert r["error"] is None and r["class_index"] == expected[str(photo)]["class_index"]
        heatmap = tmp_path / "store" / r["files"]["heatmap"]
        assert heatmap.is_file() and r["files"]["heatmap"].startswith("cams/")
    # Run again: every output is there (found through the pyarrow filesystem), so they are skipped.
    again = explain_dataset(
        paths, output_dir="cams", filesystem=store, outputs=("heatmap",), actors=1, skip_existing=True
    ).take_all()
    assert sorted((Path(r["input"]).name, r["skipped"]) for r in again) == [
        ("cat.png", True),
        ("hot_dog.jpg", True),
        ("nope.png", False),
    ]
    # Bytes (e.g. read_binary_files from an object store), written through a file:// URI.
    blobs = ray.data.from_items([{"path": f"mem/{p.name}", "bytes": p.read_bytes()} for p in photos])
    uri = (tmp_path / "uri-out").as_uri()
    again = explain_dataset(blobs, output_dir=uri, outputs=("heatmap",), actors=1).take_all()
    for r in again:
        name = Path(r["input"]).name
        assert r["error"] is None and r["class_index"] == by_name[name]["class_index"]
        stored = tmp_path / "store" / by_name[name]["files"]["heatmap"]
        assert Path(r["files"]["heatmap"]).read_bytes() == stored.read_bytes()


@needs_ray
def test_gpus_per_actor_places_each_actor_on_its_own_gpu(tmp_path, ray_address):
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not gpus:
        pytest.skip("needs a GPU in the Ray cluster")
    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.job.bookkeeper import Bookkeeper
    from gradcam_cli.job.explain import ExplainTask
    from gradcam_cli.job.ray.executor import run_on_ray
    from gradcam_cli.job.ray.pool import plan_pool
    from gradcam_cli.options import ExplainOptions, ModelOptions

    plan = plan_pool(EngineOptions(engine="ray", gpus_per_actor=1))
    assert plan.actors == gpus and plan.gpus == 1
    src = photo_folder(tmp_path / "photos", 4 * gpus)
    items = collect_inputs([str(src)], recursive=True)
    task = ExplainTask(
        ModelOptions("resnet18", pretrained=False), ExplainOptions(outputs=("heatmap",)), str(tmp_path / "out")
    )
    book = Bookkeeper(len(items), None)
    run_on_ray(task, items, book, plan, batch_size=2)
    summary = book.close()
    assert summary.done == len(items) and summary.failed == 0
    placed = [a["gpus"] for a in summary.actors]
    assert len(placed) == gpus and all(len(g) == 1 for g in placed)
    assert len({g[0] for g in placed}) == gpus  # a GPU each, none shared
    assert all(a["device"].startswith("cuda") for a in summary.actors)
    # Without a GPU share an actor stays off the GPUs (Ray would not stop it using one).
    cpu_plan = plan_pool(EngineOptions(engine="ray", actors=1))
    task = ExplainTask(task.model, task.options, str(tmp_path / "cpu"))
    book = Bookkeeper(len(items), None)
    run_on_ray(task, items, book, cpu_plan, batch_size=2)
    summary = book.close()
    assert summary.failed == 0 and [a["device"] for a in summary.actors] == ["cpu"] and summary.actors[0]["gpus"] == []


@needs_ray
def test_evaluate_on_ray_measures_what_the_local_engine_measures(tmp_path, ray_address):
    """Faithfulness and sanity included; a broken photo fails alone, an unannotated one is skipped."""
    src = photo_folder(tmp_path / "photos", 3)  # both actors, and a photo with two classes
    (src / "set1" / "broken.jpg").write_bytes((src / "set0" / "img00.jpg").read_bytes()[:300])
    (src / "set0" / "unlabelled.jpg").write_bytes((src / "set0" / "img00.jpg").read_bytes())
    boxes = tmp_path / "boxes.csv"
    rows = [
        f"{src / f'set{i % 2}' / f'img{i // 2:02d}.jpg'},{i * 100},10,5,{60 + 8 * i},{70 + 3 * i}" for i in range(3)
    ]
    rows.append(f"{src / 'set0' / 'img01.jpg'},7,50,40,110,88")  # a second class on one photo
    rows.append(f"{src / 'set1' / 'broken.jpg'},1,0,0,10,10")
    boxes.write_text("file,class,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    common = [
        "evaluate",
        src,
        "-r",
        "-a",
        boxes,
        "--json",
        "-b",
        "2",
        "--device",
        "cpu",
        *tiny_model(tmp_path),
        "--method",
        "gradcam",
        "--method",
        "scorecam",
        "--faithfulness",
        "--faithfulness-steps",
        "4",
        "--sanity",
        "--sanity-images",
        "2",
    ]
    local = gradcam(*common, "-o", tmp_path / "local", extra_env={"OMP_NUM_THREADS": "1"})
    # The sanity check runs in the driver: one torch thread there too, for the same rounding.
    ray_run = gradcam(
        *common,
        "-o",
        tmp_path / "ray",
        "--engine",
        "ray",
        "--ray-address",
        ray_address,
        "--actors",
        "2",
        extra_env={"OMP_NUM_THREADS": "1"},
    )
    assert local.returncode == ray_run.returncode == 1, ray_run.stderr
    summary = "3 done, 1 skipped, 1 failed of 5"
    assert summary in local.stderr and summary in ray_run.stderr, ray_run.stderr
    assert "unlabelled.jpg: no annotations; skipped" in ray_run.stderr and "broken.jpg" in ray_run.stderr
    assert "Traceback" not in ray_run.stderr
    local_rows, ray_rows = jsonl(local.stdout), jsonl(ray_run.stdout)
    assert (
        [(r["method"], r["layer"], r["images"], r["samples"]) for r in ray_rows]
        == [(r["method"], r["layer"], r["images"], r["samples"]) for r in local_rows]
        == [("gradcam", "bn2", 3, 4), ("scorecam", "bn2", 3, 4)]
    )
    # One torch thread in every process and the same batches (the files test above shows it byte for byte): the
    # same float32 operations on the same values, so the same figures; the summaries are float64 means of the same
    # values in the same (input) order, rounded alike. Measured: equal.
    for got, want in zip(ray_rows, local_rows):
        assert got.keys() == want.keys()
        for key in got:
            if isinstance(want[key], float):
                assert got[key] == want[key], key
        assert [s["randomised"] for s in got["sanity"]] == [s["randomised"] for s in want["sanity"]]
        assert len(got["sanity"]) > 1 and got["sanity"] == want["sanity"]
    # Per sample and method, in input order: the same files, classes and predictions, the same figures.
    table = {}
    for engine in ("local", "ray"):
        with open(tmp_path / engine / "per_image.csv", newline="") as fh:
            table[engine] = list(csv.reader(fh))
    assert len(table["ray"]) == len(table["local"]) == 1 + 2 * 4
    assert table["ray"] == table["local"]


def test_dataset_rows_have_a_column_for_every_field_of_a_record():
    from gradcam_cli.job.ray.actor import RECORD_COLUMNS

    schema = json.loads((ROOT / "gradcam_cli" / "record.schema.json").read_text())
    fields = {name for variant in schema["oneOf"] for name in variant["properties"]}
    assert fields | {"skipped"} == set(RECORD_COLUMNS)


@needs_ray
def test_the_python_api_evaluates_on_ray_as_it_does_locally(tmp_path, ray_address):
    """gradcam_cli.evaluate(..., engine="ray") measures what the local engine measures, in the same order."""
    from gradcam_cli import evaluate

    boxes = ROOT / "tests" / "data" / "sample_boxes.csv"
    photos = [str(SAMPLES / name) for name in ("cat.png", "dogs.png", "hot_dog.jpg", "samoyed.png")]
    common = dict(methods=["gradcam", "layercam"], faithfulness=True, measure=None)
    local = evaluate(None, photos, boxes, **common)
    remote = evaluate(None, photos, boxes, engine="ray", ray_address=ray_address, actors=2, **common)
    assert [s.image for s in remote.measurements.samples] == [s.image for s in local.measurements.samples]
    assert len(local.summaries) == len(remote.summaries) == 2
    for got, want in zip(remote.summaries, local.summaries):
        assert (got["method"], got["layer"], got["images"], got["samples"]) == (
            want["method"],
            want["layer"],
            want["images"],
            want["samples"],
        )
        for key, value in want.items():
            if isinstance(value, float):  # other processes, other thread counts: float rounding apart
                assert got[key] == pytest.approx(value, abs=1e-4), key
            elif key not in ("sweep",):
                assert got[key] == value, key
