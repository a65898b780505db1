"""A small model service that logs every image it is sent with pixelscope's ImageLogger.

    make service                      # uvicorn on 127.0.0.1:8008
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8008/predict

The model is a **stub, and says so**: it calls an image "bright" or "dark" by its mean luma (one
decode with Pillow at a reduced size). It stands in for a real classifier so the service's cost
is the service's, not a network's. Each request's bytes go to `ImageLogger.log` (enqueue only)
with the stub's label and confidence; windows, drops and drift are the logger's (see
pixelscope/image_logger.py). Settings from the environment:

    PIXELSCOPE_LOG=0                  serve without logging (the load test's baseline)
    PIXELSCOPE_WINDOW=1h              window length
    PIXELSCOPE_OUT=reports/monitor/service
    PIXELSCOPE_REFERENCE=path/to/profile.json   drift-test each window against it
    PIXELSCOPE_ON_FULL=drop           block | drop | sample
"""

from __future__ import annotations

import io
import os
from contextlib import asynccontextmanager

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL = "stub: bright vs dark by mean luma (not a trained model)"
MAX_BYTES = 20 * 1024 * 1024


def stub_predict(data: bytes) -> tuple[str, float]:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("L", (64, 64))
        mean = sum(i * n for i, n in enumerate(im.convert("L").resize((64, 64)).histogram())) / (64 * 64) / 255
    return ("bright", mean) if mean >= 0.5 else ("dark", 1 - mean)


@asynccontextmanager
async def lifespan(app: Starlette):
    app.state.logger = None
    if os.environ.get("PIXELSCOPE_LOG", "1") != "0":
        from pixelscope import ImageLogger

        app.state.logger = ImageLogger(window=os.environ.get("PIXELSCOPE_WINDOW", "1h"),
                                       out=os.environ.get("PIXELSCOPE_OUT", "reports/monitor/service"),
                                       reference=os.environ.get("PIXELSCOPE_REFERENCE") or None,
                                       on_full=os.environ.get("PIXELSCOPE_ON_FULL", "drop"),  # type: ignore[arg-type]
                                       source="service")
    try:
        yield
    finally:
        if app.state.logger is not None:
            app.state.logger.close()  # the open window is written on shutdown


async def predict(request: Request) -> JSONResponse:
    data = await request.body()
    if not data or len(data) > MAX_BYTES:
        return JSONResponse({"error": f"send one image as the request body (at most {MAX_BYTES:,} bytes)"}, 400)
    try:
        label, confidence = stub_predict(data)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return JSONResponse({"error": f"not an image: {type(e).__name__}"}, 400)
    logger = request.app.state.logger
    logged = logger.log(data, prediction=label, confidence=confidence) if logger is not None else None
    return JSONResponse({"label": label, "confidence": round(confidence, 4), "model": MODEL, "logged": logged})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "logging": request.app.state.logger is not None})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)], lifespan=lifespan)
