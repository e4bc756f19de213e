import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

# Offline machines: make any accidental hub access fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Layer tables are cached on disk: keep the tests' cache away from the user's.
os.environ.setdefault("GRADCAM_CACHE_DIR", tempfile.mkdtemp(prefix="gradcam-test-cache-"))


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def default_loaded():
    from gradcam_cli import load_model

    return load_model()
