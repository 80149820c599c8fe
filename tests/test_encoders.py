"""A new encoder is one class and one registry line: a tiny waveform encoder, registered here,
trains, predicts, judges a timeline and exports end to end, beside the paper's video branch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from avemotion.config import TrainSettings
from avemotion.media.features import extract_features, load_audio
from avemotion.media.inputs import WAVEFORM, FeatureSettings
from avemotion.media.preprocess import FeatureCache, entry_keys
from avemotion.registry import MODELS, ModelSettings, model_settings
from avemotion.samples import sample_videos
from avemotion.training.models import ENCODERS, Encoder, create_model
from avemotion.training.train import train

from conftest import TEST_IMAGE_SIZE, check_predict_export_and_timeline


class TinyWaveformEncoder(Encoder):
    """One strided convolution over the raw samples, averaged over time."""

    input = WAVEFORM
    dim = 16

    def __init__(self, backbone, settings, image_size, weights) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, self.dim, kernel_size=400, stride=160)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 16)."""
        return self.conv(waveform.float().unsqueeze(1)).relu().mean(dim=2)


AUDIO_ONLY = ModelSettings("tiny_waveform_audio_only", None, None, video_encoder=None,
                           audio_encoder="tiny_waveform", pretrained=False)
FUSED = ModelSettings("tiny_waveform_resnet18", "resnet18", None, audio_encoder="tiny_waveform",
                      temporal_hidden=16, pretrained=False)
FEATURES = FeatureSettings(frame_size=TEST_IMAGE_SIZE, waveform_seconds=3.0)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The encoder and its two models, registered for this module only (other tests loop over
    the registry)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ENCODERS, "tiny_waveform", TinyWaveformEncoder)  # the one registry line
        patch.setitem(MODELS, AUDIO_ONLY.name, AUDIO_ONLY)
        patch.setitem(MODELS, FUSED.name, FUSED)
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_table, registered):
    """Both models trained two epochs on the bundled clips; their run folders."""
    root = tmp_path_factory.mktemp("encoders")
    cache = FeatureCache.open(root / "cache", FEATURES)
    runs = {}
    for settings in (AUDIO_ONLY, FUSED):
        recipe = TrainSettings(model=settings, split="random", max_epochs=2, batch_size=4, progress=False)
        train(sample_table, cache, root / settings.name, recipe)
        runs[settings.name] = root / settings.name
    return runs


def test_the_model_reads_the_inputs_its_encoders_declare():
    model = create_model(FUSED.name, image_size=TEST_IMAGE_SIZE)
    assert model.inputs == ("frames", "waveform") and model.temporal is not None
    assert create_model(AUDIO_ONLY.name).inputs == ("waveform",)
    assert model_settings(AUDIO_ONLY.name).modalities == ("audio",)


def test_the_waveform_is_16_khz_mono_cut_or_padded_to_its_length():
    video = sample_videos()[0]
    features = extract_features(video, FEATURES, inputs=(WAVEFORM,))
    assert set(features.inputs) == {WAVEFORM}
    waveform = features[WAVEFORM]
    assert waveform.shape == (3 * 16_000,) and waveform.dtype == np.float16
    voice = load_audio(video)
    kept = min(len(voice), len(waveform))
    assert np.abs(waveform[:kept].astype(np.float32) - voice[:kept]).max() < 2e-3
    assert not waveform[kept:].any()  # a shorter voice is zero-padded


@pytest.mark.slow
def test_training_caches_the_waveform_only_for_models_that_read_it(trained, sample_table):
    root = next(iter(trained.values())).parent / "cache"
    entries = {path.name.split("-", 2)[2]: len(list((path / "clips").glob("*.npz")))
               for path in root.glob("features-*")}
    assert entries == {"frames-mel": 0, "frames-waveform": 6, "waveform": 6}  # no spectrogram made
    cache = FeatureCache.open(root, FEATURES, (WAVEFORM,))
    entry = np.load(cache.path(entry_keys(sample_table)[0]))
    assert "waveform" in entry and "mel" not in entry and "frames" not in entry
    for run in trained.values():
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1 and (run / "model.ckpt").is_file()


@pytest.mark.parametrize("name", [AUDIO_ONLY.name, FUSED.name])
@pytest.mark.slow
def test_predict_timeline_and_export_of_a_new_encoder(trained, name, tmp_path):
    classifier, exported = check_predict_export_and_timeline(trained[name] / "model.ckpt", tmp_path)
    assert classifier.card.inputs == create_model(name, image_size=TEST_IMAGE_SIZE).inputs
    assert exported.card.inputs == classifier.card.inputs  # the exported file's inputs named as the model's


@pytest.mark.slow
def test_a_checkpoint_of_an_unregistered_encoder_is_refused_clearly(trained, tmp_path):
    from avemotion.training.checkpoint import CheckpointError, load_checkpoint

    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(ENCODERS, "tiny_waveform")
        with pytest.raises(CheckpointError, match="unknown encoder 'tiny_waveform'"):
            load_checkpoint(trained[AUDIO_ONLY.name] / "model.ckpt")
