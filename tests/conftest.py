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
from pixelscope.pipeline.steps import StepResult

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


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory, prefect_server) -> Path:
    """The project `make demo` builds (flows/demo.py, the same 40 images per class): v1 through the
    pipeline, v1 as the reference, a shifted batch as v2, both in the history. Tests that write
    into it work on a copy."""
    from flows.demo import demo

    root = tmp_path_factory.mktemp("make-demo") / "demo"
    demo(str(root), per_class=40)
    return root


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for servers a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, tries: int = 120) -> bool:
    """Poll a Streamlit server's /_stcore/health until it answers ok (every 0.5 s); False if it never does."""
    import time
    import urllib.request

    for _ in range(tries):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.5)
    return False


def with_paths(params: Params, **paths: Path | str) -> Params:
    """A copy of params with some paths set; metrics go beside the first one (never into the repo)."""
    p = params.model_copy(deep=True)
    for name, value in paths.items():
        setattr(p.paths, name, value if isinstance(value, str) and "://" in value else Path(value))
    if "metrics" not in paths:
        p.paths.metrics = Path(next(iter(paths.values()))).parent / "metrics"  # as the CLI's --out does
    return p


def ingest_to(params: Params, raw: Path, manifest: Path, **kw) -> StepResult:
    """The ingest step on any folder, writing the manifest where asked."""
    from pixelscope.ingest.step import ingest_step

    return ingest_step(with_paths(params, manifest=manifest, raw=raw), ".", **kw)


def profile_to(params: Params, manifest: Path, profile: Path, embeddings: Path | None = None) -> StepResult:
    """The profile step on any manifest (embedding stats only when an embedding store is given)."""
    from pixelscope.profile.step import profile_step

    return profile_step(with_paths(params, profile=profile, manifest=manifest,
                                   embeddings=embeddings or Path(profile).parent / "no-embeddings"), ".")


@pytest.fixture(autouse=True)
def main_module_kept():  # every test: AppTest runs in test_dashboard.py and test_hostile.py
    """AppTest leaves sys.modules["__main__"] pointing at dashboards/app.py; forkserver and spawn
    workers started later (ingest pools, when other threads run) would re-run the app and die
    at start, and multiprocessing.Pool waits for them forever. Put the real __main__ back."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
