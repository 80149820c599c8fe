"""Hostile and oversized inputs against a served model and `predict`: each probe's answer, the
seconds it took, and peak memory; after every server probe, /health and a normal upload must answer
within 30 s.

    python benchmarks/hostile.py [--model MODEL] [--max-upload-mb 100] [--work DIR]

MODEL is a checkpoint or an exported model.onnx (default: `effnet_lstm` with random weights at full
size and its ONNX export, served and given the video; `effnet_lstm_audio_only` and its export, given
the voices). The inputs are made in WORK (a temporary folder by
default): a 3 s 8K video, two hours of silence as FLAC, a WAV of NaN samples, a WAV whose header
claims 1 Hz, JPEG headers claiming 16000x16000, absurd microphone rates, bodies that announce more
than they send or pass the upload limit. Prints one line per probe and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import httpx
import numpy as np

from avemotion.datasets.synth import write_media
from avemotion.samples import sample_videos
from avemotion.training.export import export_onnx

from harness import peak_rss_mb, random_checkpoint, run_measured, served

RECOVERY_S = 30  # after each probe the server must answer /health and a normal upload within this


def make_inputs(work: Path) -> dict[str, Path]:
    """The hostile files, made in seconds."""
    files = {"8k.mp4": work / "8k.mp4", "two-hours.flac": work / "two-hours.flac",
             "nan.wav": work / "nan.wav", "one-hertz.wav": work / "one-hertz.wav"}
    write_media(files["8k.mp4"], [np.zeros((4320, 7680, 3), np.uint8)] * 30, fps=10,  # 3 s of a still 8K frame
                audio=np.zeros(3 * 16_000, np.float32), audio_rate=16_000)
    with av.open(str(files["two-hours.flac"]), "w") as container:
        stream = container.add_stream("flac", rate=8000, layout="mono")
        silence = np.zeros((1, 8000 * 60), np.int16)
        for _ in range(120):
            chunk = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            chunk.sample_rate = 8000
            container.mux(stream.encode(chunk))
        container.mux(stream.encode())
    files["nan.wav"].write_bytes(_wav_header(8000, 16000, float_samples=True) + np.full(4000, np.nan, "<f4").tobytes())
    files["one-hertz.wav"].write_bytes(_wav_header(1, 16000) + np.zeros(8000, "<i2").tobytes())
    return files


def _wav_header(rate: int, data_bytes: int, float_samples: bool = False) -> bytes:
    width = 4 if float_samples else 2
    return (b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (3 if float_samples else 1).to_bytes(2, "little") + (1).to_bytes(2, "little")
            + rate.to_bytes(4, "little") + (rate * width).to_bytes(4, "little") + width.to_bytes(2, "little")
            + (8 * width).to_bytes(2, "little") + b"data" + data_bytes.to_bytes(4, "little"))


def predict_probe(model: Path, clip: Path) -> str:
    """`avemotion predict MODEL CLIP` in a new process: exit status, last line, peak RSS."""
    run = run_measured([sys.executable, "-m", "avemotion.cli", "predict", str(model), str(clip), "--format", "json"])
    return f"exit {run.returncode}, {run.seconds:.1f} s, peak {run.peak_rss_mb:.0f} MB: {run.last_line}"


def live_probes(frames: int) -> dict[str, dict]:
    """Requests to /live: name -> files and form data."""
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    start = jpeg.index(b"\xff\xc0")
    huge = jpeg[: start + 5] + (16_000).to_bytes(2, "big") * 2 + jpeg[start + 9 :]
    second = np.zeros(16_000, "<f4").tobytes()
    window = [("frames", (f"f{i}.jpg", jpeg)) for i in range(frames)]
    return {
        "rate 10**15": {"files": [*window, ("audio", ("a", second))], "data": {"rate": str(10**15)}},
        "rate 0": {"files": [*window, ("audio", ("a", second))], "data": {"rate": "0"}},
        "rate 1": {"files": [*window, ("audio", ("a", second))], "data": {"rate": "1"}},
        f"{frames - 1} frames": {"files": [*window[1:], ("audio", ("a", second))], "data": {"rate": "16000"}},
        "odd audio bytes": {"files": [*window, ("audio", ("a", second[:-1]))], "data": {"rate": "16000"}},
        "NaN samples": {"files": [*window, ("audio", ("a", np.full(16_000, np.nan, "<f4").tobytes()))],
                        "data": {"rate": "16000"}},
        "16000x16000 JPEG": {"files": [("frames", ("huge.jpg", huge)), *window[1:], ("audio", ("a", second))],
                             "data": {"rate": "16000"}},
    }


def raw(url: str, head: bytes, body: bytes = b"", chunks: int = 0, chunk: bytes = b"") -> str:
    """A request sent by hand; the answer's status line, or what happened."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head + body)
        try:
            for _ in range(chunks):
                if select.select([connection], [], [], 0)[0]:
                    break  # answered: the rest is never sent
                connection.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        try:
            answer = connection.recv(65536).split(b"\r\n")[0].decode(errors="replace")
        except OSError as error:
            answer = f"({type(error).__name__})"
    return f"{answer} after {sent / (1 << 20):.1f} MB of body sent" if chunks else answer


def server_probes(url: str, files: dict[str, Path], frames: int, max_mb: int) -> list[str]:
    lines = []

    def check(name: str, answer: str, started: float) -> None:
        recovered = _recovers(url)
        lines.append(f"  {name:<26} {answer[:110]:<112} {time.perf_counter() - started:5.1f} s; then {recovered}")
        print(lines[-1], flush=True)

    for name, request in live_probes(frames).items():
        started = time.perf_counter()
        response = httpx.post(f"{url}/live", timeout=120, **request)
        check(f"/live {name}", f"{response.status_code} {response.text}", started)
    for name, path in files.items():
        started = time.perf_counter()
        response = httpx.post(f"{url}/predict", files={"file": (name, path.read_bytes())}, timeout=120)
        check(f"/predict {name}", f"{response.status_code} {response.text}", started)
    form = b"Content-Type: multipart/form-data; boundary=b\r\n"
    started = time.perf_counter()
    check("/predict announces 300 MB", raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + form
                                           + b"Content-Length: 314572800\r\n\r\n"), started)
    started = time.perf_counter()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    piece = b"\0" * (1 << 20)
    check(f"/predict {4 * max_mb} MB chunked", raw(
        url, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + form + b"Transfer-Encoding: chunked\r\n\r\n",
        body=f"{len(part):x}\r\n".encode() + part + b"\r\n",
        chunks=4 * max_mb, chunk=f"{len(piece):x}\r\n".encode() + piece + b"\r\n"), started)
    started = time.perf_counter()
    check("/predict stalls", raw(url, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + form
                                 + b"Content-Length: 1000\r\n\r\n--b\r\n"), started)
    return lines


def _recovers(url: str) -> str:
    started = time.perf_counter()
    try:
        health = httpx.get(f"{url}/health", timeout=RECOVERY_S).json()["status"]
        video = sample_videos()[0]
        normal = httpx.post(f"{url}/predict", files={"file": (video.name, video.read_bytes())},
                            timeout=RECOVERY_S).status_code
    except httpx.HTTPError as error:
        return f"NOT RECOVERED ({type(error).__name__})"
    return f"health {health}, upload {normal} in {time.perf_counter() - started:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--max-upload-mb", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, help="also write every line to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = make_inputs(work)
        models = [args.model] if args.model else [random_checkpoint(work / "model.ckpt"),
                                                   random_checkpoint(work / "audio.ckpt", "effnet_lstm_audio_only")]
        if args.model is None:
            models += [export_onnx(model, model.with_suffix(".onnx")) for model in list(models)]
        report = {}
        for model in models:
            print(f"{model.name}: predict", flush=True)
            takes = (".wav", ".flac", ".mp4") if model.stem == "audio" else (".mp4",)
            lines = [f"  {name:<26} {predict_probe(model, path)}" for name, path in files.items()
                     if path.suffix in takes]
            if model.stem == "audio":  # its server is the fused model's
                report[model.name] = lines
                print("\n".join(lines), flush=True)
                continue
            print("\n".join(lines), flush=True)
            print(f"{model.name}: serve --max-upload-mb {args.max_upload_mb}", flush=True)
            with served(model, "--max-upload-mb", str(args.max_upload_mb)) as (url, process):
                frames = httpx.get(f"{url}/health").json()["frames"]
                videos = {name: path for name, path in files.items() if path.suffix == ".mp4"}
                lines += server_probes(url, videos, frames, args.max_upload_mb)
                peak = peak_rss_mb(process.pid)
            lines.append(f"  server peak RSS {peak:.0f} MB")
            print(lines[-1], flush=True)
            report[model.name] = lines
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
