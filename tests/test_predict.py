from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

import avemotion
from avemotion.cli import main
from avemotion.config import ServeSettings
from avemotion.datasets.cremad import EMOTIONS
from avemotion.media.features import FeatureSettings, load_audio, sample_frames
from avemotion.runtime.predict import load
from avemotion.runtime.serve import create_app
from avemotion.samples import sample_videos
from avemotion.training.checkpoint import load_checkpoint

from conftest import TEST_IMAGE_SIZE
from harness import CHROMIUM, fake_camera, free_port, headless_chromium, log, served
from media import write_clip
from test_features import bad_media


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
    inputs, _ = sample_batch
    with torch.no_grad():
        cached = torch.softmax(load_checkpoint(checkpoint)[0](inputs), dim=1).numpy()
    assert np.abs(cached - [list(r.probabilities.values()) for r in results]).max() < 1e-5


@pytest.mark.parametrize("suffix, options", [
    (".mp4", {"size": (320, 240), "fps": 25, "audio_rate": 44_100, "channels": 2}),
    (".webm", {"size": (96, 128), "fps": 30}),
    (".mov", {"size": (640, 360), "fps": 24, "audio_rate": 8_000, "channels": 1}),
    (".mkv", {"frames": 15, "fps": 30, "audio_rate": 22_050}),            # half a second
    pytest.param(".mp4", {"frames": 900, "size": (64, 48), "fps": 10, "audio_rate": 16_000},
                 marks=pytest.mark.slow, id="mp4-a-minute-and-a-half"),
])
def test_any_container_size_rate_and_length(classifier, tmp_path, suffix, options):
    clip = write_clip(tmp_path / f"clip{suffix}", **options)
    result = classifier.predict(clip)
    assert result.ok, result.error
    assert result.features["frames"].shape == (8, 3, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE)
    levels = result.features["frames"][:, 0].mean(axis=(1, 2))
    frames = options.get("frames", 30)
    wanted = np.linspace(0, frames - 1, 8).round()
    # Frame i is grey level (i * 7) % 256; the codec's YUV round trip moves grey by up to 4. A clip
    # longer than the frames decoding holds at once is thinned evenly (every 4th of 900 frames is
    # kept, and the last), so each sampled frame is within two frames of its exact position.
    reach = 0 if frames <= 256 else 2
    for level, position in zip(levels, wanted):
        candidates = (np.arange(position - reach, position + reach + 1) * 7) % 256
        assert np.abs(candidates - level).min() < 5, (level, position)
    assert levels[-1] == pytest.approx(((frames - 1) * 7) % 256, abs=4)  # the last frame itself


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


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """The test checkpoint exported to ONNX by `avemotion export`, with its model card in the
    file's metadata."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the tests that use it read their own output
        assert main(["export", str(checkpoint), "-o", str(path)]) == 0
    return path


def test_onnx_export_matches_pytorch(checkpoint, classifier, exported, capsys):
    onnx_path = exported  # written by `avemotion export`
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




# Predict with an exported model alone, from the command line and from Python, and build the web
# app on it; then list the heavy packages that got imported on the way.
TORCH_FREE = """
import json, sys
import avemotion
from avemotion.cli import main
from avemotion.runtime.serve import create_app
model, clip = sys.argv[1:]
code = main(["predict", model, clip, "--format", "csv"])
classifier = avemotion.load(model)
create_app(classifier)
result = classifier.predict(clip)
heavy = sorted(name for name in ("torch", "timm", "lightning", "sklearn") if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "probabilities": result.probabilities,
                  "labels": classifier.labels, "frame_size": classifier.card.feature_settings.frame_size}))
"""


def test_an_exported_model_alone_predicts_and_serves_without_torch(exported, classifier):
    video = sample_videos()[2]
    completed = subprocess.run([sys.executable, "-c", TORCH_FREE, str(exported), str(video)],
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    csv_output, summary = completed.stdout.strip().rsplit("\n", 1)
    report = json.loads(summary)
    assert report["code"] == 0 and report["heavy"] == []
    assert report["labels"] == list(EMOTIONS) and report["frame_size"] == TEST_IMAGE_SIZE
    assert report["probabilities"] == pytest.approx(classifier.predict(video).probabilities, abs=1e-4)
    assert csv_output.splitlines()[0] == "path,label," + ",".join(EMOTIONS)


@pytest.mark.slow  # writes and loads six ONNX files
def test_a_shared_model_file_whose_card_could_not_be_true_is_refused_clearly(exported, tmp_path, capsys):
    import onnx

    from avemotion.runtime.predict import ONNX_METADATA_KEY

    card = json.loads(onnx.load(str(exported)).metadata_props[0].value)
    cases = {
        "not-an-object": ("[1, 2]", "model card is JSON but not an object (a list)"),
        "no-labels": (json.dumps({**card, "labels": []}), "labels must be a non-empty list of names"),
        "wrong-width": (json.dumps({**card, "labels": card["labels"][:4]}),
                        "has 4 labels but the network gives 6 outputs"),
        "huge-frames": (json.dumps({**card, "feature_settings": {**card["feature_settings"], "frame_size": 10**6}}),
                        "frame_size = 1000000 is outside 16-1024"),
        "many-speeds": (json.dumps({**card, "test_time_speeds": [0.8, 0.9, 1.1, 1.2, 1.3]}),
                        "test-time speeds [0.8, 0.9, 1.1, 1.2, 1.3] are not at most 4 factors within 0.5-2"),
        "speeds-of-a-face": (json.dumps({**card, "test_time_speeds": [0.9]}),
                             "test-time speeds play a voice faster or slower, but the model reads frames, mel"),
    }
    for name, (text, words) in cases.items():
        bad = onnx.load(str(exported))
        onnx.helper.set_model_props(bad, {ONNX_METADATA_KEY: text})
        onnx.save(bad, str(tmp_path / f"{name}.onnx"))
        assert main(["predict", str(tmp_path / f"{name}.onnx"), str(sample_videos()[0])]) == 2, name
        error = capsys.readouterr().err
        assert f"{name}.onnx" in error and words in error and error.count("\n") == 1, error


def test_an_onnx_model_without_its_card_is_refused_clearly(exported, tmp_path, capsys):
    import onnx

    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert main(["predict", str(tmp_path / "bare.onnx"), str(sample_videos()[0])]) == 2
    error = capsys.readouterr().err
    assert "bare.onnx: this ONNX model carries no avemotion metadata" in error and error.count("\n") == 1


def test_training_commands_without_torch_say_which_install_they_need(tmp_path):
    def without_torch(*arguments):
        code = f"import sys; sys.modules['torch'] = None\nfrom avemotion.cli import main\nsys.exit(main({list(arguments)}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)

    completed = without_torch("export", str(tmp_path / "model.ckpt"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "avemotion export: error: this needs torch, part of the training install: pip install "
        "'avemotion[train]' (an exported ONNX model predicts and serves without it)")
    listed = without_torch("models")  # the ready models need no training install; the others do
    assert listed.returncode == 0 and "avemotion-base-1" in listed.stdout
    assert "need the training install: this needs torch" in listed.stdout


@pytest.fixture(scope="module")
def client(classifier):
    return TestClient(create_app(classifier, ServeSettings(max_upload_mb=1)))


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


@contextlib.contextmanager
def live_server(classifier, settings: ServeSettings = ServeSettings()):
    """The app served by uvicorn on a free localhost port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(classifier, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def upload(url: str, video: Path) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (video.name, video.read_bytes())}, timeout=120)


@pytest.mark.slow
def test_concurrent_uploads_all_get_their_own_answer(checkpoint, classifier):
    videos = sample_videos() * 2
    expected = {video.name: classifier.predict(video).probabilities for video in sample_videos()}
    with served(checkpoint, "--concurrency", "8", "--queue", "8") as (url, process):
        with ThreadPoolExecutor(len(videos)) as pool:
            responses = list(pool.map(lambda video: upload(url, video), videos))
        assert process.poll() is None, log(process)[-2000:]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert [response.status_code for response in responses] == [200] * len(videos)
    for video, response in zip(videos, responses):
        assert response.json()["probabilities"] == pytest.approx(expected[video.name], abs=1e-6)


class HeldClassifier:
    """A classifier whose predictions wait until released, to fill the server's places on purpose."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.card, self.labels = classifier.card, classifier.labels
        self.release = threading.Event()

    def predict(self, path):
        self.release.wait(timeout=60)
        return self.classifier.predict(path)


def test_a_prediction_past_the_time_limit_gets_504_and_frees_its_place(classifier):
    held = HeldClassifier(classifier)
    video = sample_videos()[0]
    # the limit leaves a real prediction time to finish once released, on a busy machine too
    client = TestClient(create_app(held, ServeSettings(concurrency=1, queue=0, time_limit=3)))
    started = time.monotonic()
    late = client.post("/predict", files={"file": (video.name, video.read_bytes())})
    assert late.status_code == 504 and "longer than the server's 3 s limit" in late.json()["error"]
    assert time.monotonic() - started < 10
    assert client.get("/health").json()["admitted"] == 0  # its place is free again
    held.release.set()
    assert client.post("/predict", files={"file": (video.name, video.read_bytes())}).status_code == 200


def raw_request(url: str, head: bytes, chunks, pause: float = 0.0) -> tuple[bytes, int]:
    """Send a request by hand (headers, then body chunks until the server answers or closes);
    return the answer and how many body bytes were sent."""
    import select
    import socket

    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        for chunk in chunks:
            if select.select([connection], [], [], pause)[0]:
                break  # the server has answered
            try:
                connection.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        connection.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    return answer, sent


@pytest.mark.slow
def test_uploads_past_the_limit_are_refused_as_they_arrive_and_stalled_ones_closed(classifier, monkeypatch):
    from avemotion.runtime import serve

    monkeypatch.setattr(serve, "STALL_SECONDS", 1.0)
    with live_server(classifier, ServeSettings(max_upload_mb=1)) as url:
        announced = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 314572800\r\n\r\n")
        answer, sent = raw_request(url, announced, [])
        assert b" 413 " in answer.split(b"\r\n")[0] and b"1 MB upload limit" in answer
        chunked = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
        body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n"
                + b"\0" * (64 * 1024 - 80))
        piece = f"{len(body):x}\r\n".encode() + body + b"\r\n"
        answer, sent = raw_request(url, chunked, [piece] * 160, pause=0.002)  # 10 MB offered
        assert b" 413 " in answer.split(b"\r\n")[0]
        assert sent < 4 << 20  # refused before four times the limit was read
        stalled = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   b"Content-Length: 1000\r\n\r\n--b\r\n")
        started = time.monotonic()
        answer, _ = raw_request(url, stalled, [])
        assert b" 408 " in answer.split(b"\r\n")[0] and time.monotonic() - started < 10
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert upload(url, sample_videos()[0]).status_code == 200


@pytest.mark.slow
def test_past_the_queue_the_server_answers_503_with_retry_after_and_loses_nothing(classifier):
    held = HeldClassifier(classifier)
    video = sample_videos()[0]
    with live_server(held, ServeSettings(concurrency=1, queue=1)) as url, ThreadPoolExecutor(2) as pool:
        admitted = [pool.submit(upload, url, video) for _ in range(2)]  # one running, one waiting
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["admitted"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = upload(url, video)
        held.release.set()
        answered = [future.result() for future in admitted]
        after = upload(url, video)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1 and "busy" in refused.json()["error"]
    assert [response.status_code for response in answered] == [200, 200]
    assert after.status_code == 200


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run "
                    "installs it with apt-get; it could not be installed here)")
@pytest.mark.slow
def test_browser_uploads_a_clip_and_reads_the_result(classifier):
    from playwright.sync_api import sync_playwright

    video = sample_videos()[4]
    expected = classifier.predict(video)
    with live_server(classifier) as url, sync_playwright() as playwright:
        browser = headless_chromium(playwright)
        page = browser.new_page()
        page.goto(f"{url}/")
        page.set_input_files("#file", str(video))
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        label = page.inner_text("#label")
        bars = page.locator(".bar").count()
        frames = page.locator("#frames img").count()
        top = page.get_attribute(".bar.top", "data-label")
        browser.close()
    assert label == f"{expected.emotion} ({expected.label})"
    assert (bars, frames, top) == (6, 8, expected.label)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run "
                    "installs it with apt-get; it could not be installed here)")
@pytest.mark.slow
def test_the_page_shows_a_model_s_label_text_as_text_never_as_markup(classifier):
    from dataclasses import replace

    from playwright.sync_api import sync_playwright

    from avemotion.runtime.predict import EmotionClassifier

    markup = [f'<img src=x onerror="document.title=\'ran {index}\'">' for index in range(6)]
    hostile = EmotionClassifier(classifier.network, replace(classifier.card, labels=markup))
    with live_server(hostile) as url, sync_playwright() as playwright:
        browser = headless_chromium(playwright)
        page = browser.new_page()
        page.goto(f"{url}/")
        page.set_input_files("#file", str(sample_videos()[4]))
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        images, title, names = (page.locator("#bars img").count(), page.title(),
                                page.locator("#bars .name").all_inner_texts())
        browser.close()
    assert images == 0 and "ran" not in title
    assert names == markup  # shown as the text it is


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run "
                    "installs it with apt-get; it could not be installed here)")
def test_camera_mode_labels_a_live_camera_and_microphone_again_and_again(classifier, tmp_path):
    from playwright.sync_api import sync_playwright

    camera = fake_camera(sample_videos()[0], tmp_path)
    with live_server(classifier) as url, sync_playwright() as playwright:
        browser = headless_chromium(playwright, *camera)
        page = browser.new_page()
        page.goto(f"{url}/")
        page.click("#camera")
        page.wait_for_function("Number(document.getElementById('live').dataset.updates || 0) >= 4",
                               timeout=60_000)
        label = page.inner_text("#live-label")
        bars = page.locator("#live-bars .bar").count()
        latency = int(page.get_attribute("#latency", "data-ms"))
        page.click("#stop")
        error = page.inner_text("#error")
        browser.close()
    assert any(f"({emotion})" in label for emotion in EMOTIONS)
    assert bars == 6 and error == ""
    assert 0 < latency < 30_000


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run "
                    "installs it with apt-get; it could not be installed here)")
@pytest.mark.slow
def test_camera_mode_says_so_when_the_browser_refuses_the_camera(classifier):
    from playwright.sync_api import sync_playwright

    with live_server(classifier) as url, sync_playwright() as playwright:
        browser = headless_chromium(playwright, "--deny-permission-prompts")
        page = browser.new_page()
        page.goto(f"{url}/")
        page.click("#camera")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
        error = page.inner_text("#error")
        browser.close()
    assert "refused the camera or microphone" in error


def test_live_endpoint_judges_a_captured_window_as_a_clip(client, classifier):
    clip = sample_videos()[5]
    images = [frame.transpose(1, 2, 0) for frame in sample_frames(clip, FeatureSettings(frame_size=160))]
    jpegs = [("frames", (f"f{i}.jpg", cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()))
             for i, image in enumerate(images)]
    audio = load_audio(clip, 44_100)
    response = client.post("/live", files=[*jpegs, ("audio", ("a.f32", audio.astype("<f4").tobytes()))],
                           data={"rate": "44100"})
    assert response.status_code == 200, response.text
    body = response.json()
    received = [cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for _, (_, jpeg) in jpegs]  # what the server decodes: JPEG is lossy
    expected = classifier.predict_capture(received, audio, 44_100).probabilities
    assert body["probabilities"] == pytest.approx(expected, abs=1e-6)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5 and body["server_ms"] > 0
    missing = client.post("/live", files=jpegs, data={"rate": "44100"})
    assert missing.status_code == 422 and "send the window's audio" in missing.json()["error"]


def test_live_windows_that_could_hurt_the_server_are_refused_before_the_work(client):
    frame = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    frames = [("frames", (f"f{i}.jpg", frame)) for i in range(8)]
    second = np.sin(np.arange(16_000) / 10).astype("<f4")

    def live(files=frames, audio=second.tobytes(), rate="16000"):
        response = client.post("/live", files=[*files, ("audio", ("a.f32", audio))], data={"rate": rate})
        return response.status_code, response.json().get("error")

    for rate in ("0", "-1", "1", str(10**15)):  # a resampler spinning for ever, or 2.4 GiB
        status, error = live(rate=rate)
        assert status == 422 and "is not a microphone's" in error, rate
    assert live(files=frames[:7]) == (422, "send the window's 8 camera frames (got 7)")
    assert live(audio=second.tobytes()[:-1])[1].endswith("is not whole float32 samples")
    assert "not finite numbers" in live(audio=np.full(16_000, np.nan, "<f4").tobytes())[1]
    assert live(audio=np.zeros(31 * 8_000, "<f4").tobytes(), rate="8000")[0] == 413
    # a header stating 16000x16000 is refused before anything is decoded
    start = frame.index(b"\xff\xc0")
    huge = frame[: start + 5] + (16_000).to_bytes(2, "big") * 2 + frame[start + 9 :]
    status, error = live(files=[("frames", ("huge.jpg", huge)), *frames[1:]])
    assert status == 422 and "huge.jpg: 16000x16000 is larger than a camera frame" in error
    status, error = live(files=[("frames", ("x.jpg", b"not a jpeg")), *frames[1:]])
    assert status == 422 and "x.jpg: not a JPEG or PNG image" in error
    assert live()[0] == 200


def test_a_clip_with_nothing_to_judge_says_which_input_is_empty(classifier, tmp_path, sample_batch, sample_cache):
    from avemotion.datasets.synth import write_media

    from conftest import calibrated_checkpoint

    frames = [np.full((120, 160, 3), 90, np.uint8)] * 30
    silent = write_media(tmp_path / "silent.mp4", frames, fps=30, audio=np.zeros(16_000, np.float32),
                         audio_rate=16_000)
    voiced = write_clip(tmp_path / "voiced.mp4", frames=30)
    voice_model = load(calibrated_checkpoint("effnet_lstm_audio_only", tmp_path / "audio.ckpt", sample_batch,
                                             sample_cache.settings))
    results = voice_model.predict_batch([silent, voiced])
    assert results[0].error == f"{silent}: its voice is silent, nothing to judge" and results[0].label is None
    assert results[1].ok  # the clip beside it is still judged
    capture = voice_model.predict_capture([], np.zeros(8_000, np.float32), 16_000)
    assert capture.error == "this window: its voice is silent, nothing to judge"
    assert classifier.predict(silent).ok  # a fused model judges a silent clip by its face
