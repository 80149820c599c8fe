"""Pretrained speech encoders as the audio branch, on tiny random encoders of both families made
here: a Whisper converted to CTranslate2, and a WavLM (no hub, no download)."""

from __future__ import annotations

import json
from dataclasses import replace
from unittest import mock

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ctranslate2", reason="speech encoders need the speech install: pip install 'avemotion[speech]'")
pytest.importorskip("transformers", reason="speech encoders need the speech install: pip install 'avemotion[speech]'")

from avemotion.config import TrainSettings, recipe
from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.index import write_metadata
from avemotion.errors import UsageError, WeightsUnavailable
from avemotion.media.inputs import FeatureSettings
from avemotion.media.preprocess import FeatureCache
from avemotion.media.speech import (
    SPEECH_RATE,
    LazySpeechEncoder,
    WeightsMismatch,
    load_speech_encoder,
    mean_and_std,
    speed_perturbed,
    voiced,
)
from avemotion.registry import MODELS, ModelSettings, model_settings
from avemotion.runtime.predict import averaged_over_speeds, load
from avemotion.runtime.probabilities import softmax
from avemotion.samples import sample_videos
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.evaluate import evaluate_run
from avemotion.training.export import export_onnx
from avemotion.training.models import create_model
from avemotion.training.train import train

from conftest import TEST_IMAGE_SIZE, check_predict_export_and_timeline

FEATURES = FeatureSettings(frame_size=TEST_IMAGE_SIZE, waveform_seconds=3.0)
WIDTH = 32  # the tiny encoders' width


def tiny_whisper(folder, seed: int = 0):
    """A random two-layer Whisper of width 32, saved by transformers (with its feature extractor, a
    transformers encoder's folder too) and converted to CTranslate2."""
    import ctranslate2
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=64, d_model=WIDTH, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=32,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(config).save_pretrained(folder / "transformers")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder / "transformers")
    ctranslate2.converters.TransformersConverter(str(folder / "transformers")).convert(str(folder / "ct2"))
    return folder / "ct2"


def tiny_wavlm(folder):
    """A random two-layer WavLM of width 32 with a wav2vec 2.0 feature extractor."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, num_buckets=32, max_bucket_distance=64)
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SPEECH_RATE).save_pretrained(folder)
    return folder


class TinyEncoders(dict):
    """The tiny encoders' folders by key, each made when first asked for."""

    def __init__(self, root) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, key: str):
        makers = {"whisper": lambda: tiny_whisper(self.root / "whisper"),
                  "other_whisper": lambda: tiny_whisper(self.root / "other", seed=1),
                  "transformers": lambda: tiny_wavlm(self.root / "wavlm")}
        self[key] = makers[key]()
        return self[key]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return TinyEncoders(tmp_path_factory.mktemp("speech-encoders"))


@pytest.fixture(scope="module")
def models(encoders):
    """An audio-only model on each tiny encoder and a fused one beside a ResNet-18 video branch,
    registered for this module only."""
    settings = {
        "whisper": ModelSettings("tiny_whisper_audio_only", None, str(encoders["whisper"]),
                                 video_encoder=None, audio_encoder="whisper"),
        "transformers": ModelSettings("tiny_wavlm_audio_only", None, str(encoders["transformers"]),
                                      video_encoder=None, audio_encoder="transformers"),
        "fused": ModelSettings("resnet18_lstm_tiny_whisper", "resnet18", str(encoders["whisper"]),
                               audio_encoder="whisper", temporal_hidden=16, pretrained=False),
        "tuned": ModelSettings("tiny_wavlm_tuned_audio_only", None, str(encoders["transformers"]),
                               video_encoder=None, audio_encoder="transformers_tuned", speech_pooling="attentive"),
    }
    # the registered speech models' head: an RBF SVM fitted in closed form, under both protocols
    settings["svm"] = replace(settings["whisper"], name="tiny_whisper_svm_audio_only", fusion="svm")
    settings["speaker_norm"] = settings["svm"]
    # an SVM on an encoder of several layers reads them side by side
    settings["layers_svm"] = replace(settings["transformers"], name="tiny_wavlm_svm_audio_only", fusion="svm")
    # the ready voice's head: one hidden layer over every layer side by side, fitted by its probe's recipe
    settings["hidden"] = replace(settings["transformers"], name="tiny_wavlm_mlp_audio_only", fusion="mlp",
                                 temporal_hidden=16, speech_layers="side_by_side")
    with pytest.MonkeyPatch.context() as patch:
        for model in settings.values():
            patch.setitem(MODELS, model.name, model)
        yield settings


def voice(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, round(seconds * SPEECH_RATE)).astype(np.float32)


def test_the_padding_of_a_voice_is_left_out_and_layers_are_pooled_over_time():
    padded = np.concatenate([voice(1.0), np.zeros(SPEECH_RATE, np.float32)])
    assert len(voiced(padded)) == SPEECH_RATE
    assert len(voiced(np.zeros(10, np.float32))) == SPEECH_RATE // 10  # silence: the shortest voice
    hidden = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # (layers, time, width)
    pooled = mean_and_std(hidden)
    assert pooled.shape == (2, 8)
    assert np.allclose(pooled[1, :4], hidden[1].mean(axis=0)) and np.allclose(pooled[1, 4:], hidden[1].std(axis=0))


@pytest.mark.slow  # builds tiny encoders: a few seconds
@pytest.mark.parametrize("family,layers", [("whisper", 1), ("transformers", 3)])
def test_an_encoder_pools_each_layer_and_ignores_the_padding(encoders, family, layers):
    encoder = load_speech_encoder(family, str(encoders[family]))
    assert encoder.identity.layers == layers and encoder.identity.width == WIDTH
    speech = voice(1.5)
    padded = np.concatenate([speech, np.zeros(SPEECH_RATE, np.float32)])
    embedded = encoder.embed(np.stack([padded, np.concatenate([voice(2.5, seed=1)])[: len(padded)]]))
    assert embedded.shape == (2, layers, 2 * WIDTH) and np.isfinite(embedded).all()
    assert np.allclose(embedded[0], encoder.embed_one(speech), atol=1e-5)  # padding changes nothing
    assert not np.allclose(embedded[0], embedded[1])
    hidden = encoder.hidden_states(speech)  # what is pooled, frame by frame
    assert hidden.shape[0] == layers and hidden.shape[2] == WIDTH and hidden.shape[1] > 1
    assert np.allclose(mean_and_std(hidden), encoder.embed_one(speech))


@pytest.mark.slow  # builds a tiny Whisper: a few seconds
def test_whispers_every_layer_through_transformers_ends_in_what_ctranslate2_gives(encoders):
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    layered = load_speech_encoder("transformers", str(encoders["whisper"].parent / "transformers"))
    assert (layered.identity.layers, layered.identity.width) == (3, WIDTH)  # the input embedding + 2 layers
    speech = voice(1.5)
    # the same weights in CTranslate2, in float32, on the same unpadded voice
    ct2 = ctranslate2.models.Whisper(str(encoders["whisper"]), device="cpu", compute_type="float32")
    mel = FeatureExtractor(feature_size=80)(speech, padding=0)
    output = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(mel[np.newaxis, :, :150]), to_cpu=True))
    pooled = layered.embed_one(speech)
    assert pooled.shape == (3, 2 * WIDTH)
    assert np.allclose(pooled[-1], mean_and_std(output)[0], atol=1e-3)
    assert not np.allclose(pooled[0], pooled[-1], atol=1e-2)  # the layers differ


@pytest.mark.slow  # builds a tiny Whisper: a few seconds
def test_whisper_through_transformers_on_its_whole_window_equals_its_own_forward(encoders):
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = encoders["whisper"].parent / "transformers"
    layered = load_speech_encoder("transformers", str(folder))
    window = voice(30.0)  # exactly the 3,000 frames Whisper's forward insists on
    mel = WhisperFeatureExtractor.from_pretrained(folder)(window, sampling_rate=SPEECH_RATE, return_tensors="pt")
    with torch.no_grad():
        expected = WhisperModel.from_pretrained(folder).get_encoder()(mel["input_features"]).last_hidden_state
    assert np.allclose(layered._hidden(window)[-1], expected[0].numpy(), atol=1e-4)


@pytest.mark.slow  # builds a tiny Whisper and exports it
def test_whisper_in_onnx_runtime_gives_the_states_of_the_transformers_path(encoders, tmp_path, monkeypatch):
    from avemotion.media import whisper_onnx

    monkeypatch.setenv(whisper_onnx.CACHE_VARIABLE, str(tmp_path))
    folder = str(encoders["whisper"].parent / "transformers")
    in_torch = load_speech_encoder("transformers", folder)
    in_onnx = load_speech_encoder("transformers", folder, whisper_onnx=True)
    assert isinstance(in_onnx, whisper_onnx.WhisperOnnxEncoder) and in_onnx.identity == in_torch.identity
    for seconds in (0.3, 2.5, 21.0):  # one frame pair to chunks of 20 s
        speech = voice(seconds, seed=2)
        assert np.allclose(in_onnx.embed_one(speech), in_torch.embed_one(speech), atol=1e-4)
    assert len(list((tmp_path / "whisper-onnx").glob("*.onnx"))) == 1
    monkeypatch.setattr(whisper_onnx, "export_whisper_encoder", lambda *args: pytest.fail("exported twice"))
    load_speech_encoder("transformers", folder, whisper_onnx=True)  # from the cache


@pytest.mark.slow
def test_a_voice_longer_than_whisper_s_window_is_encoded_in_chunks(encoders):
    encoder = load_speech_encoder("whisper", str(encoders["whisper"]))
    long_voice = voice(31.0)
    embedded = encoder.embed_one(long_voice)  # 30 s and 1 s: two calls, their frames pooled together
    assert embedded.shape == (1, 2 * WIDTH) and np.isfinite(embedded).all()
    assert not np.allclose(embedded, encoder.embed_one(long_voice[: 30 * SPEECH_RATE]))


@pytest.mark.slow
def test_a_shared_encoder_loads_once_and_embeds_from_several_threads_at_once(encoders, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from avemotion.media import speech

    loads = []
    original = speech.load_speech_encoder
    monkeypatch.setattr(speech, "load_speech_encoder",
                        lambda *args, **options: loads.append(args) or original(*args, **options))
    shared = LazySpeechEncoder("whisper", str(encoders["whisper"]))
    voices = [voice(1.0 + index / 4, seed=index)[np.newaxis] for index in range(8)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(shared.embed, voices))
    assert len(loads) == 1  # the first callers wait for one load
    alone = [shared.embed(one) for one in voices]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(together, alone))


def test_other_weights_than_the_recorded_ones_are_refused(encoders):
    recorded = load_speech_encoder("whisper", str(encoders["whisper"])).identity
    with pytest.raises(WeightsMismatch, match="not the ones the model was trained with"):
        load_speech_encoder("whisper", recorded.name, weights=encoders["other_whisper"], expected=recorded)


def test_without_weights_offline_one_paragraph_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="--weights PATH") as error:
        load_speech_encoder("whisper", "base")
    assert "faster-whisper-base" in str(error.value)
    with pytest.raises(WeightsUnavailable, match="no whisper weights"):
        load_speech_encoder("whisper", "base", weights=tmp_path)


def test_the_voice_activity_detector_streams_as_one_pass_and_tells_speech_from_noise():
    from faster_whisper.vad import get_vad_model

    from avemotion.media.features import load_audio
    from avemotion.media.voice_activity import FRAME, VoiceActivity
    from avemotion.samples import sample_audio

    speech = np.concatenate([load_audio(path) for path in sample_audio()])
    whole = np.asarray(get_vad_model()(speech[: len(speech) // FRAME * FRAME])).ravel() >= 0.5
    streamed = VoiceActivity()
    for start in range(0, len(speech), 3_000):  # fed in pieces that cut frames in two
        streamed.add(speech[start : start + 3_000])
    assert streamed.speech == list(whole) and any(whole)
    noise = VoiceActivity()
    noise.add(np.random.default_rng(0).normal(0, 0.05, 4 * SPEECH_RATE).astype(np.float32))
    assert not noise.has_voice(0, 4 * SPEECH_RATE) and streamed.has_voice(0, SPEECH_RATE * 2)


def test_a_speech_model_refuses_features_at_another_rate(sample_table, tmp_path):
    cache = FeatureCache.open(tmp_path, FeatureSettings(sample_rate=8_000))
    plan = TrainSettings(model=model_settings("whisper_base_audio_only"), progress=False)
    with pytest.raises(UsageError, match="reads voices at 16000 Hz, not the 8000 Hz"):
        train(sample_table, cache, tmp_path / "run", plan)


def test_registered_speech_models_list_without_their_weights():
    model = create_model("whisper_base_audio_only", pretrained=False)
    assert model.inputs == ("waveform",) and not model.trains_encoders
    assert model.audio_feature_mean.shape == (1, 1024)  # Whisper base: 512 wide, mean and spread
    assert model_settings("whisper_base_audio_only").frozen_speech
    assert recipe(TrainSettings(model=model_settings("whisper_base_audio_only"))).linear_probe
    hidden = recipe(TrainSettings(model=model_settings("whisper_base_mlp_audio_only")))
    assert hidden.linear_probe  # a hidden layer is fitted by its probe's recipe too
    gated = recipe(TrainSettings(model=replace(model_settings("whisper_base_audio_only"), fusion="gated")))
    assert not gated.linear_probe and gated.learning_rate == 1e-3  # a head no probe fits learns by gradient
    assert create_model("vit_lstm_whisper_base", pretrained=False).inputs == ("frames", "waveform")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_table, models):
    """Each model trained a few epochs on the bundled clips; their run folders."""
    root = tmp_path_factory.mktemp("speech-runs")
    cache = FeatureCache.open(root / "cache", FEATURES)
    runs = {}
    for key, settings in models.items():
        plan = recipe(TrainSettings(model=settings, split="random", max_epochs=3, batch_size=4, progress=False))
        if key == "transformers":  # its layer weights learn by gradient descent, without the probe
            plan = replace(plan, linear_probe=False)
        if key == "fused":  # the video branch's embeddings cached too, the LSTM and head trained
            plan = replace(plan, freeze_backbones=True, max_epochs=2)
        if key == "svm":  # its probe also fitted on the training voices played slower and faster, and
            # each voice it judges heard at those speeds too
            plan = replace(plan, speed_perturbation=(0.9, 1.1), test_time_speeds=(0.9, 1.1))
        if key == "speaker_norm":  # the SVM probe, then a speaker head that is an SVM too
            plan = replace(plan, speaker_norm=True)
        if key == "tuned":  # the fine-tuning recipe, shortened
            plan = replace(plan, max_epochs=2, batch_size=4)
        train(sample_table, cache, root / key, plan)
        runs[key] = root / key
    return runs


def test_a_new_embedding_format_is_cached_apart_from_the_old(models, monkeypatch):
    from avemotion.training import embeddings

    model = create_model(models["whisper"].name, pretrained=False)
    before = embeddings.backbone_digest(model, FEATURES.digest())
    monkeypatch.setattr(embeddings, "EMBEDDING_FORMAT", embeddings.EMBEDDING_FORMAT + 1)
    assert embeddings.backbone_digest(model, FEATURES.digest()) != before


@pytest.mark.slow
def test_speech_models_train_on_embeddings_computed_once(trained, encoders):
    for key in ("whisper", "transformers"):
        config = json.loads((trained[key] / "config.json").read_text())
        assert config["train"]["freeze_backbones"]  # nothing in the encoder to train
        assert config["train"]["linear_probe"] == (key == "whisper")  # the recipe's closed-form last layer
        model, info = load_checkpoint(trained[key] / "model.ckpt")
        identity = info.encoders["audio"]
        assert identity.family == key and identity.digest
        assert not any(name.startswith("encoders.") for name in model.state_dict())  # weights stay outside
    wavlm, _ = load_checkpoint(trained["transformers"] / "model.ckpt")
    assert not np.allclose(wavlm.adapters["audio"].logits.detach().numpy(), 0)  # layer weights learned
    embeddings = list((trained["whisper"].parent / "cache").glob("**/embeddings-*/*.npz"))
    assert len(embeddings) >= 6


@pytest.mark.slow
def test_a_fine_tuned_encoder_learns_inside_the_network_and_rebuilds_without_the_hub(
        trained, encoders, models, monkeypatch):
    from safetensors.torch import load_file

    from avemotion.training import models as models_module
    from avemotion.training.train import EmotionModule

    config = json.loads((trained["tuned"] / "config.json").read_text())["train"]
    assert not config["freeze_backbones"] and config["learning_rate"] == 5e-4  # the fine-tuning recipe
    start = load_file(encoders["transformers"] / "model.safetensors")

    def no_hub(*args):
        raise AssertionError("a checkpoint rebuilds its encoder from the configuration it saved")

    monkeypatch.setattr(models_module, "weights_folder", no_hub)
    model, info = load_checkpoint(trained["tuned"] / "model.ckpt")
    assert info.encoder_architectures["audio"]["model_type"] == "wavlm" and not info.encoders  # nothing outside
    tuned = {name.removeprefix("encoders.audio.model."): value for name, value in model.state_dict().items()
             if name.startswith("encoders.audio.model.")}
    changed = {name for name, value in tuned.items() if name in start and not np.allclose(value, start[name])}
    assert any(name.startswith("encoder.layers.") for name in changed)  # the transformer learned
    assert not any(name.startswith("feature_extractor.") for name in changed)  # its stem stayed frozen
    assert model.encoders["audio"].pooling.attention is not None
    groups = EmotionModule(model, TrainSettings(model=models["tuned"], learning_rate=1e-3))._parameter_groups()
    assert [group["lr"] for group in groups] == [1e-3, 1e-3 * model.encoders["audio"].PRETRAINED_LR_SCALE]


def test_statistics_pooling_leaves_out_the_padding_and_attention_weighs_the_frames():
    import torch

    from avemotion.training.models import StatisticsPooling

    torch.manual_seed(0)
    frames = torch.randn(2, 10, 4)
    mask = torch.arange(10)[None] < torch.tensor([[6], [10]])
    plain = StatisticsPooling(4, attentive=False)(frames, mask)
    voiced = frames[0, :6].numpy()
    assert np.allclose(plain[0].numpy(), np.concatenate([voiced.mean(0), voiced.std(0)]), atol=1e-5)
    attentive = StatisticsPooling(4, attentive=True)
    padded_otherwise = frames.clone()
    padded_otherwise[0, 6:] = 100.0
    assert torch.allclose(attentive(frames, mask), attentive(padded_otherwise, mask))
    assert not torch.allclose(attentive(frames, mask), plain, atol=1e-3)


@pytest.mark.slow
def test_a_speaker_normalised_probe_judges_one_speaker_s_clips_together(trained, tmp_path):
    from avemotion.runtime.svm_probe import KernelLayer

    checkpoint = trained["speaker_norm"] / "model.ckpt"
    classifier = load(checkpoint)
    assert classifier.card.speaker_norm and classifier.card.encoders
    assert isinstance(classifier.normalisation.head, KernelLayer)  # an SVM model's speaker head is one
    results = classifier.predict_batch(sample_videos())
    assert all(result.ok for result in results)
    assert all(abs(sum(result.probabilities.values()) - 1) < 1e-5 for result in results)
    exported = load(export_onnx(checkpoint, tmp_path / "model.onnx"))  # the head in the file's metadata
    for result, again in zip(results, exported.predict_batch(sample_videos())):
        assert np.allclose(list(result.probabilities.values()), list(again.probabilities.values()), atol=1e-4)


@pytest.mark.slow
def test_a_corpus_normalised_hidden_layer_is_fitted_again_on_what_the_head_reads(models, four_actor_metadata,
                                                                                 tmp_path):
    from avemotion.datasets.index import read_metadata
    from avemotion.runtime.hidden_layer import HiddenLayer

    table = read_metadata(four_actor_metadata)
    plan = replace(recipe(TrainSettings(model=models["hidden"], max_epochs=1, progress=False)), corpus_norm=True)
    train(table, FeatureCache.open(tmp_path / "cache", FEATURES), tmp_path / "run", plan,
          metadata_path=str(four_actor_metadata))
    checkpoint = tmp_path / "run" / "model.ckpt"
    model, info = load_checkpoint(checkpoint)
    head = info.speaker_normalisation.head
    assert info.normalised_by == "corpus" and isinstance(head, HiddenLayer)
    assert head.hidden_weight.shape == (16, model.head.hidden[1].in_features)  # it reads the head's inputs
    written = pd.read_csv(tmp_path / "run" / "predictions.csv").set_index("clip")
    _, folder = evaluate_run(tmp_path / "run", progress=False)
    evaluated = pd.read_csv(folder / "predictions.csv").set_index("clip").loc[written.index]
    columns = [f"p_{label}" for label in EMOTIONS]
    assert np.allclose(evaluated[columns], written[columns], atol=1e-5)
    results = load(checkpoint).predict_batch(sample_videos())  # a folder: one corpus's clips
    exported = load(export_onnx(checkpoint, tmp_path / "model.onnx"))  # the head in the file's metadata
    for result, again in zip(results, exported.predict_batch(sample_videos())):
        assert np.allclose(list(result.probabilities.values()), list(again.probabilities.values()), atol=1e-4)


@pytest.mark.slow
def test_the_svm_probe_is_fitted_in_closed_form_and_refuses_gradient_descent(trained, sample_table, tmp_path):
    from avemotion.training.models import KernelClassifier

    model, _ = load_checkpoint(trained["svm"] / "model.ckpt")
    assert isinstance(model.head.classifier, KernelClassifier) and len(model.head.classifier.anchors) > 0
    plan = replace(recipe(TrainSettings(model=model.settings, split="random", progress=False)), linear_probe=False)
    with pytest.raises(UsageError, match="support-vector machine, fitted in closed form"):
        train(sample_table, FeatureCache.open(tmp_path, FEATURES), tmp_path / "run", plan)


@pytest.mark.parametrize("key", ["whisper", "svm", "transformers", "layers_svm", "hidden", "fused", "tuned"])
@pytest.mark.slow
def test_predict_timeline_and_export_of_a_speech_model(trained, key, tmp_path):
    classifier, exported = check_predict_export_and_timeline(trained[key] / "model.ckpt", tmp_path)
    # the exported head reads the encoder's embedding; the runtime runs the encoder the card names
    assert exported.card.encoders == classifier.card.encoders


def test_a_voice_played_faster_is_shorter_and_higher_and_keeps_its_padded_length():
    seconds, pitch = 1.0, 200.0
    tone = np.sin(2 * np.pi * pitch * np.arange(round(seconds * SPEECH_RATE)) / SPEECH_RATE)
    voices = np.zeros((2, 2 * SPEECH_RATE), np.float32)
    voices[0, : len(tone)] = tone
    for speed in (0.9, 1.1):
        played = speed_perturbed(voices, speed)
        assert played.shape == voices.shape and not played[1].any()  # silence stays silence
        length = np.flatnonzero(played[0])[-1] + 1
        assert length == pytest.approx(len(tone) / speed, abs=2)
        spectrum = np.abs(np.fft.rfft(played[0, :length]))
        assert np.fft.rfftfreq(length, 1 / SPEECH_RATE)[spectrum.argmax()] == pytest.approx(pitch * speed, abs=2)
    assert len(np.flatnonzero(speed_perturbed(voices, 0.4)[0])) == voices.shape[1]  # cut to the input's length


@pytest.mark.slow
def test_the_svm_probe_is_also_fitted_on_its_training_voices_played_slower_and_faster(trained):
    config = json.loads((trained["svm"] / "config.json").read_text())
    assert config["train"]["speed_perturbation"] == [0.9, 1.1]
    split = pd.read_csv(trained["svm"] / "split.csv")
    fitted_on = (split["split"] != "test").sum()
    model, _ = load_checkpoint(trained["svm"] / "model.ckpt")
    # a handful of clips in 6 emotions: nearly every row is a support vector, copies included
    assert len(model.head.classifier.anchors) > fitted_on
    cache = trained["svm"].parent / "cache"
    for speed in (0.9, 1.1):
        assert len(list(cache.glob(f"**/embeddings-*/*.speed-{speed:g}.npz"))) >= fitted_on


@pytest.mark.slow
def test_evaluating_a_frozen_speech_model_on_another_table_reads_the_embeddings_training_cached(trained, sample_table,
                                                                                                tmp_path):
    from avemotion.training.embeddings import EmbeddingCache

    write_metadata(sample_table, tmp_path / "clips.csv")  # the clips training encoded
    with mock.patch.object(EmbeddingCache, "_embed_batch", side_effect=AssertionError("encoded again")):
        metrics, _ = evaluate_run(trained["svm"], metadata=tmp_path / "clips.csv", progress=False)
        evaluate_run(trained["speaker_norm"], metadata=tmp_path / "clips.csv", progress=False)
    assert metrics["clips"] == len(sample_table)


@pytest.mark.slow
def test_a_model_that_hears_each_voice_at_its_test_time_speeds_predicts_as_it_was_evaluated(trained, sample_table,
                                                                                             tmp_path):
    run = trained["svm"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["accuracy_as_recorded"] <= 1  # beside the accuracy the speeds gave
    classifier = load(run / "model.ckpt")
    assert classifier.card.test_time_speeds == (0.9, 1.1)
    assert load(export_onnx(run / "model.ckpt", tmp_path / "model.onnx")).card.test_time_speeds == (0.9, 1.1)
    write_metadata(sample_table, tmp_path / "clips.csv")
    _, folder = evaluate_run(run, metadata=tmp_path / "clips.csv", progress=False)
    evaluated = pd.read_csv(folder / "predictions.csv").set_index("clip").filter(like="p_")

    def probabilities(classifier):
        return pd.DataFrame([{f"p_{label}": p for label, p in result.probabilities.items()}
                             for result in classifier.predict_batch(list(sample_table["video_path"]))],
                            index=sample_table["clip"])

    # the evaluation reads the cached float16 voices' embeddings, cached in float16 as training
    # reads them; a prediction decodes the voices again and encodes them in float32
    assert (probabilities(classifier) - evaluated).abs().max().max() < 5e-3
    with mock.patch("avemotion.runtime.predict.averaged_over_speeds", lambda network, speeds: network):
        as_recorded = load(run / "model.ckpt")
    assert (probabilities(as_recorded) - evaluated).abs().max().max() > 1e-2


@pytest.mark.slow
def test_the_svm_probe_is_told_which_of_its_clips_are_the_copies(models, sample_table, tmp_path):
    """Where the kernel cannot hold every row it keeps the voices as recorded: the probe must know
    which rows those are (the training and validation clips first, then their copies)."""
    from avemotion.runtime.svm_probe import fit_svm_layer
    from avemotion.training import train as training

    plan = replace(recipe(TrainSettings(model=models["svm"], split="random", progress=False)),
                   speed_perturbation=(0.9, 1.1))
    with mock.patch.object(training, "fit_svm_layer", wraps=fit_svm_layer) as fitting:
        train(sample_table, FeatureCache.open(tmp_path / "cache", FEATURES), tmp_path / "run", plan)
    copies = fitting.call_args.kwargs["copies"]
    recorded = (pd.read_csv(tmp_path / "run" / "split.csv")["split"] != "test").sum()
    assert len(copies) == 3 * recorded and not copies[:recorded].any() and copies[recorded:].all()


def test_speed_perturbation_is_for_a_probe_on_a_voice(models, sample_table, tmp_path):
    plan = recipe(TrainSettings(model=models["whisper"], split="random", progress=False))
    fused = recipe(TrainSettings(model=models["fused"], split="random", progress=False, freeze_backbones=True))
    for wrong, message in [(replace(plan, speed_perturbation=(0.0,)), "a speed is a factor between 0.5 and 2"),
                           (replace(plan, linear_probe=False), "needs --linear-probe"),
                           (replace(fused, linear_probe=True), "reads frames, waveform, not the waveform alone")]:
        with pytest.raises(UsageError, match=message):
            train(sample_table, FeatureCache.open(tmp_path, FEATURES), tmp_path / "run",
                  replace(wrong, speed_perturbation=wrong.speed_perturbation or (1.1,)))


def test_test_time_speeds_are_for_a_frozen_encoder_on_a_voice_judged_clip_by_clip(models, sample_table, tmp_path):
    plan = recipe(TrainSettings(model=models["whisper"], split="random", progress=False))
    fused = recipe(TrainSettings(model=models["fused"], split="random", progress=False, freeze_backbones=True))
    tuned = recipe(TrainSettings(model=models["tuned"], split="random", progress=False))
    for wrong, message in [(replace(plan, test_time_speeds=(3.0,)), "--test-time-speeds: a speed is a factor"),
                           (replace(plan, test_time_speeds=(0.8, 0.9, 1.1, 1.2, 1.3)), "at most 4 speeds"),
                           (replace(plan, speaker_norm=True), "speaker normalisation judges a speaker's clips"),
                           (replace(fused, test_time_speeds=(0.9,)), "reads frames, waveform, not the waveform"),
                           (replace(tuned, test_time_speeds=(0.9,)), "add --freeze-backbones")]:
        with pytest.raises(UsageError, match=message):
            train(sample_table, FeatureCache.open(tmp_path, FEATURES), tmp_path / "run",
                  replace(wrong, test_time_speeds=wrong.test_time_speeds or (1.1,)))


def test_judged_at_test_time_speeds_a_voice_gets_its_probabilities_averaged_over_them():
    """The network hears the voice as recorded and at each speed; the classifier's softmax of the
    result gives the mean of the three distributions."""
    heard = []

    def network(inputs):  # a voice over a second long is anger, else as likely any emotion
        lengths = np.array([len(np.flatnonzero(voice)) for voice in inputs["waveform"]], np.float32)
        heard.append(lengths)
        return np.stack([3.0 * (lengths > SPEECH_RATE), np.zeros_like(lengths), np.zeros_like(lengths)], axis=1)

    voices = np.zeros((2, 2 * SPEECH_RATE), np.float32)
    voices[0, :SPEECH_RATE] = voices[1, : SPEECH_RATE // 2] = 0.5
    judged = softmax(averaged_over_speeds(network, (0.9, 1.1))({"waveform": voices}))
    assert [round(length) for length in heard[1]] == [round(SPEECH_RATE / 0.9), round(SPEECH_RATE / 2 / 0.9)]
    played = [voices, speed_perturbed(voices, 0.9), speed_perturbed(voices, 1.1)]
    expected = np.mean([softmax(network({"waveform": heard_at})) for heard_at in played], axis=0)
    assert np.allclose(judged, expected, atol=1e-6) and np.allclose(judged.sum(axis=1), 1)
    as_recorded = softmax(network({"waveform": voices}))
    assert judged[0, 0] > as_recorded[0, 0] + 0.15  # a second's voice, longer than a second played slower
    assert np.allclose(judged[1], as_recorded[1])  # half a second's, not a second long at any speed


@pytest.mark.slow
def test_the_hidden_layer_probe_reads_every_layer_side_by_side_and_is_fitted_by_its_recipe(trained):
    import torch

    config = json.loads((trained["hidden"] / "config.json").read_text())
    assert config["train"]["linear_probe"] and config["train"]["freeze_backbones"]
    model, _ = load_checkpoint(trained["hidden"] / "model.ckpt")
    layers = model.encoders["audio"].layers
    assert isinstance(model.adapters["audio"], torch.nn.Flatten)
    assert model.head.hidden[1].in_features == layers * 2 * WIDTH and model.head.hidden[1].out_features == 16


@pytest.mark.slow
def test_an_svm_reads_every_layer_side_by_side_where_a_trained_head_weighs_them(trained):
    svm, _ = load_checkpoint(trained["layers_svm"] / "model.ckpt")
    weighed, _ = load_checkpoint(trained["transformers"] / "model.ckpt")
    layers = 3  # the tiny WavLM's input embedding and two layers
    assert svm.head.classifier.anchors.shape[1] == layers * 2 * WIDTH
    assert svm.head.classifier.anchors.shape[0] > 0  # fitted
    assert weighed.head.classifier.weight.shape[1] == 2 * WIDTH
    assert len(list(weighed.adapters["audio"].parameters())) == 1  # the softmax weights per layer


@pytest.mark.slow
def test_a_checkpoint_refuses_other_weights_and_takes_a_moved_folder(trained, encoders, tmp_path):
    import shutil

    checkpoint = trained["whisper"] / "model.ckpt"
    with pytest.raises(WeightsMismatch):
        load(checkpoint, weights=encoders["other_whisper"]).predict(sample_videos()[0])
    moved = shutil.copytree(encoders["whisper"], tmp_path / "moved")
    assert load(checkpoint, weights=moved).predict(sample_videos()[0]).ok


# An exported Whisper model predicts from the command line with the head in ONNX Runtime and the
# encoder in CTranslate2; then the heavy packages that got imported on the way.
TORCH_FREE = """
import json, sys
from avemotion.cli import main
code = main(["predict", *sys.argv[1:], "--format", "json"])
heavy = sorted(name for name in ("torch", "timm", "lightning", "transformers") if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.slow
def test_an_exported_whisper_model_predicts_without_torch(trained, tmp_path):
    import subprocess
    import sys

    exported = export_onnx(trained["whisper"] / "model.ckpt", tmp_path / "model.onnx")
    completed = subprocess.run([sys.executable, "-c", TORCH_FREE, str(exported), str(sample_videos()[0])],
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    predictions, summary = completed.stdout.strip().rsplit("\n", 1)
    assert json.loads(summary) == {"code": 0, "heavy": []}
    assert json.loads(predictions)[0]["label"] in EMOTIONS


@pytest.mark.slow
def test_the_server_and_its_camera_mode_run_a_speech_model(trained):
    from fastapi.testclient import TestClient

    from avemotion.media.features import load_audio
    from avemotion.runtime.serve import create_app

    classifier = load(trained["whisper"] / "model.ckpt")
    client = TestClient(create_app(classifier))
    video = sample_videos()[1]
    upload = client.post("/predict", files={"file": (video.name, video.read_bytes())})
    assert upload.status_code == 200, upload.text
    assert upload.json()["probabilities"] == pytest.approx(classifier.predict(video).probabilities, abs=1e-6)
    voice = load_audio(video, 48_000).astype("<f4")
    live = client.post("/live", files=[("audio", ("a.f32", voice.tobytes()))], data={"rate": "48000"})
    assert live.status_code == 200, live.text
    expected = classifier.predict_capture([], voice, 48_000).probabilities
    assert live.json()["probabilities"] == pytest.approx(expected, abs=1e-6)


def test_every_layer_of_whisper_base_is_read_side_by_side_by_either_head():
    import torch

    for name in ("whisper_base_layers_audio_only", "whisper_base_layers_linear_audio_only"):
        model = create_model(name, num_classes=6, pretrained=False)  # its shape is known without weights
        assert model.adapters["audio"](torch.zeros(2, 7, 1024)).shape == (2, 7 * 1024)
    weighed = create_model("wavlm_base_plus_linear_audio_only", num_classes=6, pretrained=False)
    assert weighed.adapters["audio"](torch.zeros(2, 13, 1536)).shape == (2, 1536)  # SUPERB's weighted sum
