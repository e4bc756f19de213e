import gc
import os
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import SAMPLES

# Offline machines: make any accidental hub access fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Layer tables are cached on disk: keep the tests' cache away from the user's.
os.environ.setdefault("GRADCAM_CACHE_DIR", tempfile.mkdtemp(prefix="gradcam-test-cache-"))
# Under pytest-xdist the workers share the cores: one intra-op thread each (torch reads OMP_NUM_THREADS when it
# starts, and the processes the tests start inherit it), so that n workers do not run n x cores threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Tests that must not share a worker with one another: they time or meter themselves (page faults, peak memory,
# seconds), or start a Ray instance or a browser. They form one xdist group: one worker runs them one at a time.
SERIAL_FILES = {"test_ray.py", "test_allocator.py"}
SERIAL_FIXTURES = {"browser"}  # test_report.py's real-browser tests
SERIAL_TESTS = {
    "test_report_of_2000_results_is_made_and_opens_fast",
    "test_soak_300_images_flat_memory_and_no_hooks_left",
    "test_bomb_is_refused_before_decoding",
    "test_huge_png_is_explained_at_a_bounded_size",
    "test_offline_hub_weights_fail_fast_in_one_full_line",
}


def _serial(item: pytest.Item) -> bool:
    return (
        item.path.name in SERIAL_FILES
        or item.originalname in SERIAL_TESTS
        or bool(SERIAL_FIXTURES & set(getattr(item, "fixturenames", ())))
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every other test is grouped by its file: a file's models, caches and module fixtures are then built once,
    on one worker, and freed when the file is done (``_free_the_files_caches``)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group("serial" if _serial(item) else item.path.stem))


@pytest.fixture(scope="module", autouse=True)
def _free_the_files_caches(request: pytest.FixtureRequest):
    """The cached models of a test file (functools caches, float64 copies: gigabytes for VGG-16) go with it."""
    yield
    for value in vars(request.module).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    gc.collect()


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def default_loaded():
    from gradcam_cli import load_model

    return load_model()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never a browser download)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def cat():
    return SAMPLES / "cat.png"


@pytest.fixture(scope="module")
def resnet18_state():
    """A seeded random 3-class ResNet-18's state dict."""
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict()
