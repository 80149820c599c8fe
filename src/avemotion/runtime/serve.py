"""A small web application over the predictor: one page to drop a clip on, and a JSON endpoint.

    avemotion serve run/model.ckpt            # http://127.0.0.1:8000
    curl -F file=@clip.mp4 http://127.0.0.1:8000/predict

Work is bounded: at most `concurrency` predictions run at once (each in a worker thread), at most
`queue` more wait for one, and any request beyond those is answered at once with 503 and a
Retry-After, so a burst of uploads never piles up; a prediction past `time_limit` is answered with
504 and its place freed. Every request gets 200, a 4xx with the reason, 503 or 504.
"""

from __future__ import annotations

import asyncio
import base64
import json
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
from avemotion.datasets.listing import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from avemotion.media.inputs import FRAMES
from avemotion.runtime.predict import EmotionClassifier, load
from avemotion.runtime.speakers import SpeakerNormError

MB = 1 << 20  # bytes
CAMERA_HOP_S = TimelineSettings().hop  # the camera mode judges a window as often as a timeline does
CHUNK = MB  # bytes read at a time while saving an upload
MULTIPART_SLACK = 64 * 1024  # bytes of a request body beyond the upload limit: form fields and framing
STALL_SECONDS = 15.0  # a request body that stops arriving this long is answered with 408
# A live window's limits, checked before the work they protect: the microphone's rate, the audio's
# length, each camera frame's size (read from its header before decoding). Decoded frames are
# shrunk to at most LIVE_SIDE pixels a side at once, so eight of them stay small.
LIVE_RATES = (8_000, 192_000)  # Hz
MAX_LIVE_SECONDS = 30.0
MAX_LIVE_PIXELS = 4096 * 4096
LIVE_SIDE = 1280


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


class BodyLimit:
    """ASGI middleware that counts a request's body as it arrives: a body that passes `limit` bytes
    is refused with 413 at once (before it is read when its Content-Length says so), and one that
    stops arriving for `stall_seconds` gets 408, so no client can fill the disk or hold a
    connection by announcing more than it sends."""

    def __init__(self, app, limit: int, stall_seconds: float) -> None:
        self.app, self.limit, self.stall_seconds = app, limit, stall_seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        stated = dict(scope["headers"]).get(b"content-length", b"0")
        if not stated.isdigit() or int(stated) > self.limit:
            return await self._refuse(send, 413, self._too_large())
        refusal: dict = {}  # the answer that replaces the application's, once the body goes wrong
        received, complete = 0, False

        async def counted_receive():
            nonlocal received, complete
            if refusal:
                return {"type": "http.disconnect"}
            if complete:  # the whole body is in: only a disconnect can come, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.stall_seconds)
            except asyncio.TimeoutError:
                refusal.update(status=408, error=f"the request body stopped arriving for {self.stall_seconds:g} s")
                return {"type": "http.disconnect"}
            received += len(message.get("body", b""))
            if received > self.limit:
                refusal.update(status=413, error=self._too_large())
                return {"type": "http.disconnect"}
            complete = not message.get("more_body", False)
            return message

        async def guarded_send(message) -> None:
            if not refusal:
                return await send(message)
            if message["type"] == "http.response.start":
                await self._refuse(send, refusal["status"], refusal["error"])

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refusal:
                raise
            await self._refuse(send, refusal["status"], refusal["error"])

    def _too_large(self) -> str:
        return f"request body larger than the {self.limit // MB} MB upload limit"

    @staticmethod
    async def _refuse(send, status: int, error: str) -> None:
        body = json.dumps({"error": error}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(classifier: EmotionClassifier, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The web application: GET / (the page), POST /predict (a clip), POST /live (a window captured
    by the page's camera mode), GET /health (JSON)."""
    app = FastAPI(title="avemotion", description="Audio-visual emotion recognition")
    # the whole body may hold the upload and its multipart framing
    app.add_middleware(BodyLimit, limit=settings.max_upload_mb * MB + MULTIPART_SLACK,
                       stall_seconds=STALL_SECONDS)
    page = resources.files("avemotion.runtime").joinpath("page.html").read_text()
    admission = Admission(settings.running_at_once(), settings.queue)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        card = classifier.card
        takes_images = any(extension in IMAGE_EXTENSIONS for extension in card.extensions)
        accept = (",".join(card.extensions) + ("" if "video" in card.modalities else ",audio/*")
                  + (",image/*" if takes_images else "") + ",video/*")
        takes_voices = any(extension in AUDIO_EXTENSIONS for extension in card.extensions)
        wanted = ("a video, a face image or a voice recording" if takes_images and takes_voices
                  else "a video with a face and a voice" if set(card.modalities) == {"video", "audio"}
                  else "a face image or a video with a face" if takes_images
                  else "a voice recording or a video")
        formats = ", ".join(extension.lstrip(".") for extension in card.extensions)
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
                try:
                    result = await asyncio.wait_for(run_in_threadpool(work, *args), settings.time_limit)
                except asyncio.TimeoutError:
                    # The worker thread cannot be stopped; the request is answered and its place freed.
                    admission.record(settings.time_limit)
                    raise HTTPException(504, f"the prediction took longer than the server's "
                                             f"{settings.time_limit:g} s limit") from None
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
            "frames": [_png_data_url(frame) for frame in result.features.inputs.get(FRAMES, [])],
            **_parts(result)}


def _predict_capture(classifier: EmotionClassifier, frames: list[UploadFile], audio: UploadFile | None,
                     rate: int, settings: ServeSettings) -> dict:
    """Check and decode a live window's frames and samples, predict it, and answer (in a worker
    thread). Every limit is checked before the work it protects: a bad window is a 422."""
    started = time.perf_counter()
    limit = settings.max_upload_mb * MB
    modalities = classifier.card.modalities
    images = _live_images(frames, classifier.card.feature_settings.n_frames, limit) if "video" in modalities else []
    waveform = _live_samples(audio, rate, limit) if "audio" in modalities else None
    try:
        result = classifier.predict_capture(images, waveform, rate)
    except SpeakerNormError as error:
        raise HTTPException(422, str(error)) from error
    if not result.ok:
        raise HTTPException(422, result.error)
    return {"label": result.label, "emotion": result.emotion, "probabilities": result.probabilities,
            "names": classifier.card.label_names(), **_parts(result),
            "server_ms": round(1000 * (time.perf_counter() - started), 1)}


def _parts(result) -> dict:
    """A model of several parts (the ready model): each modality's distribution, and a note."""
    parts = {"modalities": result.by_modality} if result.by_modality else {}
    return parts | ({"note": result.note} if result.note else {})


def _live_images(frames: list[UploadFile], count: int, limit: int) -> list[np.ndarray]:
    """A live window's camera frames, exactly as many as the model reads, each a JPEG or PNG no
    larger than MAX_LIVE_PIXELS (from its header), decoded and shrunk one at a time."""
    if len(frames) != count:
        raise HTTPException(422, f"send the window's {count} camera frames (got {len(frames)})")
    images = []
    for frame in frames:
        name = frame.filename or "frame"
        encoded = frame.file.read(limit + 1)
        if len(encoded) > limit:
            raise HTTPException(413, f"{name}: larger than the upload limit")
        size = image_dimensions(encoded)
        if size is None:
            raise HTTPException(422, f"{name}: not a JPEG or PNG image")
        if size[0] * size[1] > MAX_LIVE_PIXELS:
            raise HTTPException(422, f"{name}: {size[0]}x{size[1]} is larger than a camera frame "
                                     f"({MAX_LIVE_PIXELS // 1_000_000} megapixels at most)")
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise HTTPException(422, f"{name}: not a readable image")
        images.append(cv2.cvtColor(_shrunk(image, LIVE_SIDE), cv2.COLOR_BGR2RGB))
    return images


def _live_samples(audio: UploadFile | None, rate: int, limit: int) -> np.ndarray:
    """A live window's audio: little-endian float32 mono samples at a microphone's rate, at most
    MAX_LIVE_SECONDS of them, every one a finite number."""
    if audio is None:
        raise HTTPException(422, "send the window's audio")
    if not LIVE_RATES[0] <= rate <= LIVE_RATES[1]:
        raise HTTPException(422, f"rate {rate} Hz is not a microphone's ({LIVE_RATES[0]}-{LIVE_RATES[1]} Hz)")
    most = min(limit, round(MAX_LIVE_SECONDS * rate) * 4)
    data = audio.file.read(most + 1)
    if len(data) > most:
        raise HTTPException(413, f"audio longer than {MAX_LIVE_SECONDS:g} s at {rate} Hz")
    if not data or len(data) % 4:
        raise HTTPException(422, f"audio of {len(data)} bytes is not whole float32 samples")
    samples = np.frombuffer(data, "<f4")
    if not np.isfinite(samples).all():
        raise HTTPException(422, "audio holds samples that are not finite numbers")
    return samples


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """An image with its longer side at most `side` pixels."""
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless …), which state the image's size
JPEG_FRAME_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG or PNG from its header alone; None for anything else."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in JPEG_FRAME_MARKERS:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


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


def serve(model: str | Path | None = None, settings: ServeSettings = ServeSettings(),
          onnx: str | Path | None = None, weights: str | Path | None = None) -> None:
    """Load the classifier (the ready model without `model`, a checkpoint, or an exported ONNX
    model alone; `weights`: its speech encoder's local folder) and serve the application with uvicorn (localhost by default)."""
    import uvicorn

    classifier = load(model, onnx, weights)
    if getattr(classifier, "voice_missing", None):  # the ready model without Whisper base
        print(f"avemotion serve: faces alone are judged: {classifier.voice_missing}")
    app = create_app(classifier, settings)
    uvicorn.run(app, host=settings.host, port=settings.port)
