"""Shared fixtures: the real corpus (skipped when absent) and small real image sets."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

# Prefect state of the test session (database, cached task results) never mixes with the
# repository's own .prefect/ or an earlier session: set before tasks/flows import prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pixelscope-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import numpy as np
import pytest
from PIL import Image

from pixelscope.config import Params, parse_params

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("PIXELSCOPE_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.csv").exists():
        pytest.skip(f"real image corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory) -> Path:
    """A small demo set (real photos from scikit-image, 6 labels x 8, two sources, 2 broken files)."""
    from pixelscope.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root / "raw", root / "new", per_class=8, workers=1)
    return root


@pytest.fixture
def params() -> Params:
    return parse_params({"ingest": {"workers": 1}})


def jpeg_bytes(arr: np.ndarray, quality: int = 95, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API (prefect_test_harness) for the whole session; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()
