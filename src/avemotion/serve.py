"""A small web application over the predictor: one page to drop a clip on, and a JSON endpoint.

    avemotion serve run/model.ckpt            # http://127.0.0.1:8000
    curl -F file=@clip.mp4 http://127.0.0.1:8000/predict

Work is bounded: at most `concurrency` predictions run at once (each in a worker thread), at most
`queue` more wait for one, and any request beyond those is answered at once with 503 and a
Retry-After, so a burst of uploads never piles up. Every request gets 200, a 4xx with the reason,
or 503.
"""

from __future__ import annotations

import asyncio
import base64
import math
import tempfile
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from avemotion.config import ServeSettings, TimelineSettings
from avemotion.inputs import FRAMES
from avemotion.predict import EmotionClassifier, load
from avemotion.speakers import SpeakerNormError

MB = 1 << 20  # bytes
CAMERA_HOP_S = TimelineSettings().hop  # the camera mode judges a window as often as a timeline does
CHUNK = MB  # bytes read at a time while saving an upload


class Admission:
    """Admits at most `running` predictions at once and `waiting` more in line; refuses the rest.

    Used from the event loop only (one thread), so plain counters need no lock."""

    def __init__(self, running: int, waiting: int) -> None:
        self.running = running
        self.capacity = running + waiting
        self.admitted = 0  # running or waiting
        self.slots = asyncio.Semaphore(running)
        self.mean_seconds = 1.0  # moving average of one prediction, for Retry-After

    def full(self) -> bool:
        return self.admitted >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the work ahead of a newcomer, spread over the slots."""
        return max(1, math.ceil(self.mean_seconds * self.admitted / self.running))

    def record(self, seconds: float) -> None:
        self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds


def create_app(classifier: EmotionClassifier, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The web application: GET / (the page), POST /predict (a clip), POST /live (a window captured
    by the page's camera mode), GET /health (JSON)."""
    app = FastAPI(title="avemotion", description="Audio-visual emotion recognition")
    page = resources.files("avemotion").joinpath("page.html").read_text()
    admission = Admission(settings.running_at_once(), settings.queue)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        accept = ",".join(classifier.card.extensions) + ("" if "video" in classifier.card.modalities
                                                        else ",audio/*") + ",video/*"
        wanted = ("a video with a face and a voice" if set(classifier.card.modalities) == {"video", "audio"}
                  else "a video with a face" if "video" in classifier.card.modalities
                  else "a voice recording or a video")
        formats = ", ".join(extension.lstrip(".") for extension in classifier.card.extensions)
        return (page.replace("{{MAX_MB}}", str(settings.max_upload_mb)).replace("{{ACCEPT}}", accept)
                .replace("{{WANTED}}", wanted).replace("{{FORMATS}}", formats)
                .replace("{{WINDOW}}", f"{classifier.card.window:g}").replace("{{HOP}}", f"{CAMERA_HOP_S:g}"))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": classifier.card.model_name, "labels": classifier.labels,
                "modalities": list(classifier.card.modalities),
                "speaker_norm": classifier.card.speaker_norm,
                "frames": classifier.card.feature_settings.n_frames,
                "window_s": classifier.card.window, "hop_s": CAMERA_HOP_S,
                "admitted": admission.admitted, "capacity": admission.capacity}

    async def admitted(work, *args):
        """Run blocking work in a worker thread once admitted; 503 at once when the queue is full."""
        if admission.full():
            raise HTTPException(503, f"busy: {admission.capacity} predictions running or waiting; "
                                     "try again shortly", headers={"Retry-After": str(admission.retry_after())})
        admission.admitted += 1
        try:
            async with admission.slots:
                started = time.perf_counter()
                result = await run_in_threadpool(work, *args)
                admission.record(time.perf_counter() - started)
                return result
        finally:
            admission.admitted -= 1

    @app.post("/predict")
    async def predict(file: UploadFile) -> JSONResponse:
        suffix = Path(file.filename or "").suffix.lower()
        accepted = classifier.card.extensions
        if suffix not in accepted:
            raise HTTPException(415, f"{file.filename}: unsupported type; upload one of " + ", ".join(accepted))
        return JSONResponse(await admitted(_predict_upload, classifier, file, suffix, settings))

    @app.post("/live")
    async def live(frames: list[UploadFile] = File(default=[]), audio: UploadFile | None = None,
                   rate: int = Form(48_000)) -> JSONResponse:
        """One window captured by the page's camera mode: JPEG frames spread over it, and its audio
        as little-endian float32 mono samples at `rate`."""
        return JSONResponse(await admitted(_predict_capture, classifier, frames, audio, rate, settings))

    @app.exception_handler(HTTPException)
    def error_as_json(request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    return app


def _predict_upload(classifier: EmotionClassifier, file: UploadFile, suffix: str,
                    settings: ServeSettings) -> dict:
    """Save an upload, predict it, and answer as the page and programs read it (in a worker thread)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        _save_upload(file, path, settings.max_upload_mb)
        try:
            result = classifier.predict(path)
        except SpeakerNormError as error:
            raise HTTPException(422, str(error).replace(str(path), file.filename or "upload")) from error
    if not result.ok:  # the message names the temporary file; show the user's name instead
        raise HTTPException(422, result.error.replace(str(path), file.filename or "upload"))
    return {"file": file.filename, "label": result.label, "emotion": result.emotion,
            "probabilities": result.probabilities,
            "names": classifier.card.label_names(),
            "frames": [_png_data_url(frame) for frame in result.features.inputs.get(FRAMES, [])]}


def _predict_capture(classifier: EmotionClassifier, frames: list[UploadFile], audio: UploadFile | None,
                     rate: int, settings: ServeSettings) -> dict:
    """Decode a live window's frames and samples, predict it, and answer (in a worker thread)."""
    started = time.perf_counter()
    limit = settings.max_upload_mb * MB
    images = []
    for frame in frames:
        encoded = np.frombuffer(frame.file.read(limit), np.uint8)
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if len(encoded) else None
        if image is None:
            raise HTTPException(422, f"{frame.filename or 'frame'}: not a readable image")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    waveform = np.frombuffer(audio.file.read(limit), "<f4") if audio is not None else None
    modalities = classifier.card.modalities
    if ("video" in modalities and not images) or ("audio" in modalities and (waveform is None or not len(waveform))):
        raise HTTPException(422, f"{classifier.card.model_name} reads {' and '.join(modalities)}: "
                                 "send frames and audio")
    try:
        result = classifier.predict_capture(images, waveform, rate)
    except SpeakerNormError as error:
        raise HTTPException(422, str(error)) from error
    return {"label": result.label, "emotion": result.emotion, "probabilities": result.probabilities,
            "names": classifier.card.label_names(),
            "server_ms": round(1000 * (time.perf_counter() - started), 1)}


def _save_upload(file: UploadFile, path: Path, max_upload_mb: int) -> None:
    """Copy an upload to disk, refusing it as soon as it passes the size limit."""
    limit = max_upload_mb * MB
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


def serve(model: str | Path, settings: ServeSettings = ServeSettings(),
          onnx: str | Path | None = None, weights: str | Path | None = None) -> None:
    """Load the classifier (a checkpoint, or an exported ONNX model alone; `weights`: its speech
    encoder's local folder) and serve the application with uvicorn (localhost by default)."""
    import uvicorn

    app = create_app(load(model, onnx, weights), settings)
    uvicorn.run(app, host=settings.host, port=settings.port)
