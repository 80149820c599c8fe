"""What several benchmarks (and the tests, which have this folder on their path) share: a full-size
model with random weights, `avemotion serve` started on a free loopback port, and headless Chromium
with a fake camera and microphone."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SERVER_START_S = 60  # a server that answers no /health by then did not start
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; .ci/run installs it


@dataclass(frozen=True)
class Measured:
    """A command run in a new process: how it ended, its last line of output, how long it took and
    its own peak resident memory."""

    returncode: int
    last_line: str
    seconds: float
    peak_rss_mb: float


# Runs the command given as its arguments, then prints its exit status, the last line it wrote
# (stderr, else stdout) and its peak RSS in KB: a child's own peak, which the parent cannot read.
_MEASURE = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, "
            "text=True); print(done.returncode); "
            "print(((done.stderr or done.stdout).strip().splitlines() or [''])[-1][:150]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run_measured(command: list[str]) -> Measured:
    """Run a command in a new process and measure it (see :class:`Measured`)."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                               check=True)
    code, line, peak = completed.stdout.rstrip("\n").split("\n")[-3:]
    return Measured(int(code), line, time.perf_counter() - started, int(peak) / 1024)


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_checkpoint(path: Path, name: str = "effnet_lstm") -> Path:
    """A registered model with random weights at 224x224 (speed does not depend on the weights'
    values), saved as a checkpoint."""
    import torch

    from avemotion.datasets.cremad import EMOTIONS
    from avemotion.media.features import FeatureSettings
    from avemotion.training.checkpoint import Checkpoint, save_checkpoint
    from avemotion.training.models import create_model

    torch.manual_seed(0)
    model = create_model(name, pretrained=False).eval()
    save_checkpoint(path, model, Checkpoint.of(model, FeatureSettings(), EMOTIONS))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(model: Path, *options: str):
    """`avemotion serve MODEL` in a child process on localhost, once it answers /health; yields its
    base URL and the process (a crash ends the child, not the caller). Its log goes to a temporary
    file, read with `log(process)`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "avemotion", "serve", str(model), "--port", str(port),
                                    *options], stdout=subprocess.DEVNULL, stderr=log_file)
        process.log_file = log_file
        try:
            _wait_until_answering(url, process)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def log(process: subprocess.Popen) -> str:
    """What a process started by `served` has written to its log so far."""
    process.log_file.seek(0)
    return process.log_file.read()


def _wait_until_answering(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start:\n{log(process)[-2000:]}")


def headless_chromium(playwright, *extra: str):
    """Debian's Chromium, headless, quiet, through Playwright."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", *extra])


def fake_camera(clip: Path, folder: Path) -> tuple[str, ...]:
    """Chromium's arguments for a camera and a microphone that play a clip (in a loop), allowed
    without asking."""
    from avemotion.datasets.synth import write_media, write_y4m
    from avemotion.media.features import load_audio

    camera = write_y4m(clip, folder / "camera.y4m")
    microphone = write_media(folder / "microphone.wav", None, audio=load_audio(clip))
    return ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}", f"--use-file-for-fake-audio-capture={microphone}")
