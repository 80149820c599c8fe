"""A small web application over the predictor: one page to drop a clip on, and a JSON endpoint.

    avemotion serve run/model.ckpt            # http://127.0.0.1:8000
    curl -F file=@clip.mp4 http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import base64
import tempfile
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from avemotion.cremad import EMOTION_NAMES, VIDEO_EXTENSIONS
from avemotion.predict import EmotionClassifier

MAX_UPLOAD_MB = 100  # default upload limit
MB = 1 << 20  # bytes
CHUNK = MB  # bytes read at a time while saving an upload


def create_app(classifier: EmotionClassifier, max_upload_mb: int = MAX_UPLOAD_MB) -> FastAPI:
    """The web application: GET / (the page), POST /predict (JSON), GET /health."""
    app = FastAPI(title="avemotion", description="Audio-visual emotion recognition")
    page = resources.files("avemotion").joinpath("page.html").read_text()
    limit = max_upload_mb * MB

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page.replace("{{MAX_MB}}", str(max_upload_mb))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": classifier.info.model_settings.name,
                "labels": classifier.labels}

    @app.post("/predict")
    def predict(file: UploadFile) -> JSONResponse:
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise HTTPException(415, f"{file.filename}: unsupported type; upload one of "
                                     + ", ".join(VIDEO_EXTENSIONS))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"upload{suffix}"
            _save_upload(file, path, limit, max_upload_mb)
            result = classifier.predict(path)
        if not result.ok:  # the message names the temporary file; show the user's name instead
            raise HTTPException(422, result.error.replace(str(path), file.filename or "upload"))
        body = {"file": file.filename, "label": result.label, "emotion": result.emotion,
                "probabilities": result.probabilities,
                "names": {label: EMOTION_NAMES.get(label, label) for label in classifier.labels},
                "frames": [_png_data_url(frame) for frame in result.features.frames]}
        return JSONResponse(body)

    @app.exception_handler(HTTPException)
    def error_as_json(request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    return app


def _save_upload(file: UploadFile, path: Path, limit: int, max_upload_mb: int) -> None:
    """Copy an upload to disk, refusing it as soon as it passes the size limit."""
    written = 0
    with open(path, "wb") as handle:
        while chunk := file.file.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise HTTPException(413, f"{file.filename}: larger than the {max_upload_mb} MB limit")
            handle.write(chunk)
    if written == 0:
        raise HTTPException(422, f"{file.filename}: empty file (0 bytes)")


def _png_data_url(frame: np.ndarray) -> str:
    """A (3, H, W) RGB frame as a data: URL of a PNG, for an <img> tag."""
    _, encoded = cv2.imencode(".png", cv2.cvtColor(frame.transpose(1, 2, 0), cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000,
          onnx: str | Path | None = None, max_upload_mb: int = MAX_UPLOAD_MB) -> None:
    """Load the classifier and serve the application with uvicorn (localhost by default)."""
    import uvicorn

    app = create_app(EmotionClassifier(checkpoint, onnx), max_upload_mb)
    uvicorn.run(app, host=host, port=port)
