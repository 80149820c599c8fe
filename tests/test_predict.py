from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

import avemotion
from avemotion.checkpoint import Checkpoint, save_checkpoint
from avemotion.cli import main
from avemotion.cremad import EMOTIONS
from avemotion.models import create_model
from avemotion.predict import load
from avemotion.samples import sample_videos
from avemotion.serve import create_app

from conftest import TEST_IMAGE_SIZE
from media import write_clip
from test_features import bad_media

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sample_batch, sample_cache):
    """An effnet_lstm checkpoint whose BatchNorm statistics are calibrated on the real clips.

    A randomly initialised EfficientNet in eval mode, with the default running statistics, maps
    every input to nearly the same features; calibrated statistics make its outputs differ per
    clip, so the comparisons below are not trivially equal.
    """
    frames, mel, _ = sample_batch
    torch.manual_seed(0)
    model = create_model("effnet_lstm", pretrained=False, image_size=TEST_IMAGE_SIZE)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics become the calibration batch's
    model.train()
    with torch.no_grad():
        model(frames, mel)
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    save_checkpoint(path, model.eval(),
                    Checkpoint(model.settings, sample_cache.settings, list(EMOTIONS), 0, None))
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return load(checkpoint)


def test_python_api_predicts_real_clips(checkpoint, classifier, sample_batch):
    results = avemotion.load(checkpoint).predict_batch(sample_videos())
    assert all(r.ok for r in results)
    for result in results:
        assert set(result.probabilities) == set(EMOTIONS)
        assert abs(sum(result.probabilities.values()) - 1) < 1e-5
        assert result.label == max(result.probabilities, key=result.probabilities.get)
    spread = np.array([list(r.probabilities.values()) for r in results]).std(axis=0).max()
    assert spread > 1e-3
    single = classifier.predict(sample_videos()[2])
    assert single.probabilities == pytest.approx(results[2].probabilities, abs=1e-6)
    # the same arrays as preprocessing made: the cached batch gives the same logits
    frames, mel, _ = sample_batch
    with torch.no_grad():
        cached = torch.softmax(classifier.model(frames, mel), dim=1).numpy()
    assert np.abs(cached - [list(r.probabilities.values()) for r in results]).max() < 1e-5


@pytest.mark.parametrize("suffix, options", [
    (".mp4", {"size": (320, 240), "fps": 25, "audio_rate": 44_100, "channels": 2}),
    (".webm", {"size": (96, 128), "fps": 30}),
    (".mov", {"size": (640, 360), "fps": 24, "audio_rate": 8_000, "channels": 1}),
    (".mkv", {"frames": 15, "fps": 30, "audio_rate": 22_050}),            # half a second
    (".mp4", {"frames": 900, "size": (64, 48), "fps": 10, "audio_rate": 16_000}),  # a minute and a half
])
def test_any_container_size_rate_and_length(classifier, tmp_path, suffix, options):
    clip = write_clip(tmp_path / f"clip{suffix}", **options)
    result = classifier.predict(clip)
    assert result.ok, result.error
    assert result.features.frames.shape == (8, 3, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE)
    levels = result.features.frames[:, 0].mean(axis=(1, 2))
    frames = options.get("frames", 30)
    expected = (np.linspace(0, frames - 1, 8).round() * 7) % 256  # the grey level of each frame
    if frames <= 256:
        assert np.abs(levels - expected).max() < 5  # the codec's YUV round trip moves grey by up to 4


def test_cli_formats_and_folders(checkpoint, samples, capsys):
    folder = str(samples / "VideoFlash")
    assert main(["predict", str(checkpoint), folder, "--format", "json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in parsed] == [p.name for p in sample_videos()]
    assert all(r["label"] in EMOTIONS and r["error"] is None for r in parsed)
    assert main(["predict", str(checkpoint), folder, "--format", "csv"]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["path", "label", *EMOTIONS] and len(table) == 6
    assert main(["predict", str(checkpoint), str(sample_videos()[0])]) == 0
    text = capsys.readouterr().out
    assert "1001_DFA_ANG_XX.flv" in text and "label" in text


def test_bad_inputs_get_one_line_each_and_the_rest_still_print(checkpoint, tmp_path, capsys):
    bad = bad_media(tmp_path)
    code = main(["predict", str(checkpoint), str(sample_videos()[0]), *map(str, bad),
                 "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.strip().splitlines()
    assert len(errors) == len(bad)
    for (path, words), line in zip(bad.items(), errors):
        assert str(path) in line and words in line
    assert "Traceback" not in captured.err
    assert len(pd.read_csv(pd.io.common.StringIO(captured.out))) == 1


def test_onnx_export_matches_pytorch(checkpoint, classifier, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "-o", str(onnx_path)]) == 0
    onnx = load(checkpoint, onnx=onnx_path)
    torch_results = classifier.predict_batch(sample_videos())
    onnx_results = onnx.predict_batch(sample_videos())
    for ours, theirs in zip(torch_results, onnx_results):
        assert ours.label == theirs.label
        for label in EMOTIONS:
            assert abs(ours.probabilities[label] - theirs.probabilities[label]) < 1e-4
    capsys.readouterr()
    assert main(["predict", str(checkpoint), "--onnx", str(onnx_path), str(sample_videos()[1]),
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == torch_results[1].label


@pytest.fixture(scope="module")
def client(classifier):
    return TestClient(create_app(classifier, max_upload_mb=1))


def test_http_endpoint_with_a_real_upload(client, classifier):
    video = sample_videos()[3]
    response = client.post("/predict", files={"file": (video.name, video.read_bytes(), "video/x-flv")})
    assert response.status_code == 200
    body = response.json()
    expected = classifier.predict(video)
    assert body["label"] == expected.label and body["emotion"] == expected.emotion
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert len(body["frames"]) == 8 and body["frames"][0].startswith("data:image/png;base64,")
    assert client.get("/health").json()["labels"] == list(EMOTIONS)
    assert "Drop a video" in client.get("/").text


def test_http_endpoint_refuses_bad_uploads_clearly(client):
    cases = {
        ("notes.txt", b"hello"): (415, "unsupported type"),
        ("big.mp4", b"\0" * (1 << 20) + b"\0"): (413, "larger than the 1 MB limit"),
        ("empty.mp4", b""): (422, "empty file"),
        ("broken.flv", b"FLV not really" * 100): (422, "broken.flv: could not be decoded"),
    }
    for (name, content), (status, words) in cases.items():
        response = client.post("/predict", files={"file": (name, content)})
        assert response.status_code == status, name
        assert words in response.json()["error"]
        assert "/tmp" not in response.json()["error"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run "
                    "installs it with apt-get; it could not be installed here)")
def test_browser_uploads_a_clip_and_reads_the_result(classifier):
    import uvicorn
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        video = sample_videos()[4]
        expected = classifier.predict(video)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(video))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            label = page.inner_text("#label")
            bars = page.locator(".bar").count()
            frames = page.locator("#frames img").count()
            top = page.get_attribute(".bar.top", "data-label")
            browser.close()
        assert label == f"{expected.emotion} ({expected.label})"
        assert (bars, frames, top) == (6, 8, expected.label)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
