"""The ready model: late fusion of a face model and a voice model (avemotion.runtime.fused), and the
shipped avemotion-base-1 as shipped (its files, their SHA-256s, the bundled clips judged)."""

from __future__ import annotations

import json
from dataclasses import replace

import av
import numpy as np
import pytest

from avemotion.cli import main as avemotion
from avemotion.datasets.synth import write_media
from avemotion.media.inputs import FeatureSettings
from avemotion.ready import DEFAULT_READY_MODEL, WHISPER_VARIABLE, ReadyModel, file_sha256, load_ready
from avemotion.registry import model_settings
from avemotion.runtime.card import ModelCard
from avemotion.runtime.fused import NOTHING, FusedClassifier, fused_distribution
from avemotion.runtime.predict import EmotionClassifier
from avemotion.runtime.probabilities import softmax
from avemotion.samples import sample_audio, sample_videos

from media import write_clip

FACE_LABELS = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
VOICE_LABELS = ["anger", "calm", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
FACE_LOGITS = np.array([0.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0])  # the fake face model's answer: happiness
VOICE_LOGITS = np.array([2.5, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0])  # the fake voice's: anger


def fixed_network(logits: np.ndarray, input_name: str):
    """A network that gives every clip the same logits (and reads the input it says it reads)."""
    def network(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.tile(logits, (len(inputs[input_name]), 1)).astype(np.float32)
    return network


def face_classifier() -> EmotionClassifier:
    card = ModelCard(replace(model_settings("mobilenetv2_face"), num_classes=7), FACE_LABELS,
                     FeatureSettings(frame_size=48, waveform_seconds=3.0), inputs=("frames",))
    return EmotionClassifier(fixed_network(FACE_LOGITS, "frames"), card)


def voice_classifier() -> EmotionClassifier:
    card = ModelCard(replace(model_settings("whisper_base_layers_linear_audio_only"), num_classes=8), VOICE_LABELS,
                     FeatureSettings(waveform_seconds=3.0), inputs=("waveform",), window_seconds=2.5)
    return EmotionClassifier(fixed_network(VOICE_LOGITS, "waveform"), card)


@pytest.fixture
def fused() -> FusedClassifier:
    return FusedClassifier("fake-ready", face_classifier(), voice_classifier())


def expected_fusion() -> dict[str, float]:
    """The rule written out again: each distribution over the shared labels, renormalised, averaged."""
    face = softmax(FACE_LOGITS[None])[0]
    voice = softmax(VOICE_LOGITS[None])[0]
    voice_shared = np.array([voice[VOICE_LABELS.index(label)] for label in FACE_LABELS])
    mean = (face / face.sum() + voice_shared / voice_shared.sum()) / 2
    return dict(zip(FACE_LABELS, mean))


def silent_copy(video, path):
    """The video's frames alone, with no sound."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        rate = round(float(stream.average_rate))
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return write_media(path, images, fps=rate, audio=None, audio_rate=16_000, channels=1)


def test_fusion_averages_the_renormalised_distributions_over_the_labels_both_have():
    face = {"anger": 0.5, "happiness": 0.5}
    voice = {"anger": 0.2, "calm": 0.6, "happiness": 0.2}
    fused = fused_distribution([face, voice])
    assert fused == pytest.approx({"anger": 0.5, "happiness": 0.5})
    fused = fused_distribution([{"anger": 0.9, "happiness": 0.1}, voice])
    assert fused == pytest.approx({"anger": 0.7, "happiness": 0.3})
    assert fused_distribution([voice]) == voice  # one speaker alone is itself, calm included


def test_a_video_is_judged_by_face_and_voice_an_image_by_the_face_a_voice_file_by_the_voice(fused, tmp_path):
    video, voice_file = sample_videos()[0], sample_audio()[0]
    image = tmp_path / "face.png"
    with av.open(str(video)) as container:
        next(container.decode(video=0)).to_image().save(image)
    both, face_alone, voice_alone = fused.predict_batch([video, image, voice_file])
    assert set(both.by_modality) == {"face", "voice"}
    assert both.probabilities == pytest.approx(expected_fusion(), abs=1e-6)
    assert both.label == max(expected_fusion(), key=expected_fusion().get)
    assert set(face_alone.by_modality) == {"face"} and face_alone.label == "happiness"
    assert set(voice_alone.by_modality) == {"voice"} and voice_alone.label == "anger"
    assert "calm" in voice_alone.probabilities and "calm" not in both.probabilities
    assert both.as_dict()["modalities"]["voice"]["calm"] > 0


def test_a_face_less_video_is_judged_by_its_voice_and_a_silent_one_by_its_face(fused, tmp_path):
    faceless = write_clip(tmp_path / "grey.mp4", frames=60, level=128)
    silent = silent_copy(sample_videos()[1], tmp_path / "silent.mp4")
    by_voice, by_face = fused.predict_batch([faceless, silent])
    assert by_voice.ok and set(by_voice.by_modality) == {"voice"}
    assert by_face.ok and set(by_face.by_modality) == {"face"}


def test_a_clip_with_nothing_to_judge_gives_each_part_s_reason(fused, tmp_path):
    nothing = write_clip(tmp_path / "grey.mp4", frames=60, level=128, audio_rate=None)
    result = fused.predict(nothing)
    assert not result.ok
    assert "no face was found" in result.error and "no audio track" in result.error
    assert result.error.count(str(nothing)) == 1


def test_without_the_voice_a_video_is_judged_by_its_face_and_says_why(tmp_path):
    fused = FusedClassifier("fake-ready", face_classifier(), None, "no Whisper here")
    video_result, voice_result = fused.predict_batch([sample_videos()[0], sample_audio()[0]])
    assert set(video_result.by_modality) == {"face"} and "no Whisper here" in video_result.note
    assert not voice_result.ok and "no Whisper here" in voice_result.error
    assert fused.card.modalities == ("video",)


def test_a_camera_window_is_judged_by_both_parts(fused):
    video = sample_videos()[0]
    with av.open(str(video)) as container:
        images = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(8), container.decode(video=0))]
    rate = 16_000
    waveform = (0.2 * np.sin(np.arange(2 * rate) / rate * 2 * np.pi * 220)).astype(np.float32)
    result = fused.predict_capture(images, waveform, rate)
    assert set(result.by_modality) == {"face", "voice"}
    assert result.probabilities == pytest.approx(expected_fusion(), abs=1e-6)


def test_the_timeline_fuses_window_by_window_and_keeps_the_windows_with_one_part(fused, tmp_path):
    video = sample_videos()[0]
    silent_then_voiced = silent_copy(video, tmp_path / "silent.mp4")
    table = fused.timeline(video, window=1.0, hop=0.5)
    assert len(table) >= 2 and list(table.columns[:3]) == ["start_s", "end_s", "label"]
    face_alone = dict(zip(FACE_LABELS, softmax(FACE_LOGITS[None])[0]))
    voice_alone = dict(zip(VOICE_LABELS, softmax(VOICE_LOGITS[None])[0]))
    kinds = []
    for _, row in table[table["label"] != NOTHING].iterrows():
        judged = {label: row[label] for label in VOICE_LABELS if not np.isnan(row[label])}
        kinds.append(next(kind for kind, expected in (("both", expected_fusion()), ("face", face_alone),
                                                      ("voice", voice_alone))
                          if judged.keys() == expected.keys()
                          and np.allclose([judged[k] for k in expected], list(expected.values()), atol=1e-5)))
    assert "both" in kinds, "a talking face's windows are judged by its face and its voice together"
    silent = fused.timeline(silent_then_voiced, window=1.0, hop=0.5)
    # no sound at all: each window is the face's alone, over the face's labels
    assert silent["calm"].isna().all() and silent["happiness"].notna().any()


def test_ready_model_files_are_as_shipped_and_within_their_limits():
    model = ReadyModel.named(DEFAULT_READY_MODEL)
    assert model.changed_files() == []
    assert set(model.files()) == {path.name for path in model.folder.iterdir()} - {"model.json", "MODEL_CARD.md", "LICENSE.md"}
    sizes = [(model.folder / name).stat().st_size for name in model.files()]
    assert sum(sizes) <= 30e6 and max(sizes) <= 20e6
    card = (model.folder / "MODEL_CARD.md").read_text()
    for name in model.files():
        assert file_sha256(model.folder / name) in card, f"MODEL_CARD.md lists {name}'s SHA-256"
    assert all(entry["temperature"] > 0 for entry in model.manifest["parts"].values())


def test_every_session_leaves_the_cores_idle_between_runs():
    from avemotion.onnx_sessions import cpu_session

    voice = ReadyModel.named(DEFAULT_READY_MODEL).path("voice")
    for threads in (None, 1):
        options = cpu_session(voice, threads).get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    from avemotion.runtime.predict import _onnx_session  # what every exported model is judged in

    assert _onnx_session(voice).get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"


def test_the_shipped_ready_model_judges_the_bundled_clips_faces_without_whisper(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub: the voice cannot be had, the faces are judged
    monkeypatch.delenv(WHISPER_VARIABLE, raising=False)
    classifier = load_ready()
    assert classifier.voice is None and "openai/whisper-base" in classifier.voice_missing
    assert "AVEMOTION_WHISPER=DIR" in classifier.voice_missing
    results = classifier.predict_batch(sample_videos())
    assert all(result.ok and set(result.by_modality) == {"face"} for result in results)
    assert len({result.label for result in results}) >= 2, "six emotions are not all one label"
    assert avemotion(["predict", str(sample_videos()[0]), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "faces alone are judged" in captured.err
    assert json.loads(captured.out)[0]["modalities"]["face"]


@pytest.fixture(scope="module")
def whisper_shaped(tmp_path_factory):
    """A random Whisper of Whisper base's shape (seven hidden states of 512), narrow elsewhere, saved
    by transformers: what the hub would give, made on the spot. Its ONNX export goes to this
    module's own cache (AVEMOTION_CACHE), made once for the module's tests."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("whisper")
    folder = root / "whisper-base"
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=64, d_model=512, encoder_layers=6, decoder_layers=1,
                           encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=32,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AVEMOTION_CACHE", str(root / "cache"))
        yield root


@pytest.mark.slow
def test_the_shipped_ready_model_judges_face_and_voice_with_a_whisper_folder(whisper_shaped, monkeypatch, capsys):
    monkeypatch.setenv(WHISPER_VARIABLE, str(whisper_shaped))
    classifier = load_ready()
    assert classifier.voice is not None
    video, voice = sample_videos()[0], sample_audio()[0]
    both, heard = classifier.predict_batch([video, voice])
    assert set(both.by_modality) == {"face", "voice"} and set(heard.by_modality) == {"voice"}
    assert sum(both.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert avemotion(["predict", str(voice), "--weights", str(whisper_shaped)]) == 0
    assert "voice" in capsys.readouterr().out


def started_from_the_ready_face(run_folder) -> str:
    """The trained model's frame encoder checked against the shipped one; its recorded origin."""
    import torch
    from safetensors.numpy import load_file

    from avemotion.training.checkpoint import load_checkpoint

    model = ReadyModel.named()
    shipped = load_file(model.folder / model.manifest["parts"]["face"]["encoder_file"])
    trained, info = load_checkpoint(run_folder / "model.ckpt")
    started = trained.encoders["video"].state_dict()
    assert started.keys() == shipped.keys()
    # the backbone is frozen, but its batch norms' running statistics follow the new clips
    learned = [key for key in shipped if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(started[key], torch.from_numpy(shipped[key].astype(np.float32))) for key in learned)
    return info.encoder_origins["video"]


@pytest.mark.slow
def test_a_video_branch_starts_from_the_ready_model_s_face(sample_table, tmp_path):
    from avemotion.config import TrainSettings
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    cache = FeatureCache.open(tmp_path / "cache", FeatureSettings(frame_size=64))
    settings = TrainSettings(model=model_settings("mobilenetv2_lstm_video_only", temporal_hidden=16, pretrained=False),
                             split="random", max_epochs=1, batch_size=4, freeze_backbones=True, progress=False,
                             init_from=DEFAULT_READY_MODEL)
    train(sample_table, cache, tmp_path / "run", settings)
    assert DEFAULT_READY_MODEL in started_from_the_ready_face(tmp_path / "run")


@pytest.mark.slow
def test_the_paper_s_fused_network_trains_from_the_ready_model_s_face_and_voice_features(
        whisper_shaped, sample_table, tmp_path):
    assert avemotion(["index", str(sample_videos()[0].parent.parent), "-o", str(tmp_path / "clips.csv")]) == 0
    assert avemotion(["train", "--model", "mobilenetv2_lstm_whisper_base_layers", "--metadata",
                      str(tmp_path / "clips.csv"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                      "--init-from", DEFAULT_READY_MODEL, "--weights", str(whisper_shaped), "--split", "random",
                      "--epochs", "1", "--batch-size", "4", "--freeze-backbones", "--frame-size", "64",
                      "--temporal-hidden", "16", "--no-pretrained"]) == 0  # no ImageNet: the face starts it
    assert DEFAULT_READY_MODEL in started_from_the_ready_face(tmp_path / "run")


@pytest.mark.slow  # decodes the bundled clips first
def test_init_from_the_ready_model_refuses_another_frame_encoder(sample_table, tmp_path):
    from avemotion.config import TrainSettings
    from avemotion.errors import UsageError
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    cache = FeatureCache.open(tmp_path / "cache", FeatureSettings(frame_size=32))
    settings = TrainSettings(model=model_settings("resnet18_vit_lstm_video_only", pretrained=False), split="random",
                             max_epochs=1, progress=False, init_from=DEFAULT_READY_MODEL)
    with pytest.raises(UsageError, match="its face encoder is mobilenetv2_100"):
        train(sample_table, cache, tmp_path / "run", settings)


# The ready model judging a voice from the command line, then the heavy packages imported on the way
WITHOUT_TORCH = """
import json, sys
from avemotion.cli import main
code = main(["predict", *sys.argv[1:], "--format", "json"])
print(json.dumps({"code": code, "heavy": sorted(name for name in ("torch", "transformers") if name in sys.modules)}))
"""


@pytest.mark.slow
def test_once_whisper_is_exported_the_ready_model_predicts_without_torch(whisper_shaped):
    import subprocess
    import sys

    from avemotion.media.whisper_onnx import cache_folder

    command = [sys.executable, "-c", WITHOUT_TORCH, str(sample_videos()[0]), "--weights", str(whisper_shaped)]
    if not list((cache_folder() / "whisper-onnx").glob("*.onnx")):  # this module's other test may have exported it
        first = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "exporting the Whisper encoder" in first.stderr
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    outcome = json.loads(again.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 0, "heavy": []}
    assert json.loads("\n".join(again.stdout.strip().splitlines()[:-1]))[0]["modalities"].keys() == {"face", "voice"}


def test_a_temperature_fitted_on_held_out_clips_undoes_overconfidence():
    from avemotion.training.calibration import fitted_temperature

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 4000)
    honest = rng.normal(0, 1, (4000, 4))
    honest[np.arange(4000), targets] += 1.0  # logits whose softmax is calibrated by construction
    labels = np.array([rng.choice(4, p=row) for row in softmax(honest)])  # labels drawn from it
    assert fitted_temperature(softmax(honest), labels) == pytest.approx(1.0, abs=0.15)
    assert fitted_temperature(softmax(3 * honest), labels) == pytest.approx(3.0, rel=0.15)  # three times too sure


def test_the_server_takes_a_fused_model_and_answers_each_part(fused):
    from fastapi.testclient import TestClient

    from avemotion.config import ServeSettings
    from avemotion.runtime.serve import create_app

    client = TestClient(create_app(fused, ServeSettings(max_upload_mb=5)))
    assert "a video, a face image or a voice recording" in client.get("/").text
    video = sample_videos()[0]
    answer = client.post("/predict", files={"file": (video.name, video.read_bytes())}).json()
    assert answer["modalities"].keys() == {"face", "voice"} and answer["label"] == max(
        expected_fusion(), key=expected_fusion().get)
    assert len(answer["frames"]) == 8  # the face crops the face part saw
