"""The from-scratch recipe's parts: speaker normalisation, spectrogram masks, mixup, the recipe choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avemotion.cli import _train_settings, build_parser
from avemotion.config import FROM_SCRATCH, TrainSettings
from avemotion.features import MEL_DB_MEAN, MEL_DB_STD
from avemotion.models import create_model
from avemotion.speakers import RunningStatistics, SpeakerNormError, SpeakerStatistics, statistics_by_speaker
from avemotion.train import EmotionModule, SpectrogramMasks


def spectrograms(count: int, offset: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(offset + 5 * rng.standard_normal((1, 8, 20))).astype(np.float32) for _ in range(count)]


def test_speaker_statistics_remove_the_speaker_and_keep_the_db_scale():
    loud, quiet = spectrograms(3, -20.0), spectrograms(3, -60.0, seed=1)
    statistics = statistics_by_speaker(["a"] * 3 + ["b"] * 3, loud + quiet, "test")
    normalised = [statistics["a"].normalise(m) for m in loud] + [statistics["b"].normalise(m) for m in quiet]
    pooled_a = np.concatenate([m.reshape(8, -1) for m in normalised[:3]], axis=1)
    pooled_b = np.concatenate([m.reshape(8, -1) for m in normalised[3:]], axis=1)
    for pooled in (pooled_a, pooled_b):  # each speaker: every Mel bin at the ordinary dB mean and spread
        assert np.allclose(pooled.mean(axis=1), MEL_DB_MEAN, atol=1e-3)
        assert np.allclose(pooled.std(axis=1), MEL_DB_STD, atol=1e-2)
    assert normalised[0].shape == loud[0].shape and normalised[0].dtype == np.float32


def test_a_speaker_with_one_clip_is_refused_by_name():
    with pytest.raises(SpeakerNormError, match="first: lonely"):
        statistics_by_speaker(["a", "a", "lonely"], spectrograms(3, -30.0), "table.csv")


def test_running_statistics_equal_the_pooled_ones():
    mels = spectrograms(5, -40.0)
    running = RunningStatistics()
    for mel in mels:
        running.add(mel)
    columns = np.concatenate([mel.reshape(8, -1) for mel in mels], axis=1)  # every time step pooled
    assert np.allclose(running.result().mean, columns.mean(axis=1), atol=1e-4)
    assert np.allclose(running.result().std, columns.std(axis=1), atol=1e-4)
    assert np.allclose(SpeakerStatistics.of(mels).std, columns.std(axis=1), atol=1e-4)


def test_spectrogram_masks_cover_bands_and_spans_with_the_mean():
    mel = np.arange(64 * 128, dtype=np.float32).reshape(1, 64, 128)
    masks = SpectrogramMasks(2, seed=0)
    masked = [masks("clip", mel) for _ in range(20)]
    assert np.array_equal(mel, np.arange(64 * 128, dtype=np.float32).reshape(1, 64, 128))  # input kept
    changed = [m != mel for m in masked]
    assert any(c.any() for c in changed)
    for m, c in zip(masked, changed):
        assert np.allclose(m[c], mel.mean())
        rows, columns = c[0].all(axis=1).sum(), c[0].all(axis=0).sum()
        assert rows <= 2 * 64 // 8 and columns <= 2 * 128 // 8  # at most two bands of an eighth each
    assert not all(np.array_equal(masked[0], m) for m in masked[1:])  # a new draw every time


def test_mixup_blends_the_batch_and_the_loss():
    torch.manual_seed(0)
    model = create_model("resnet18_vit_lstm_audio_only", pretrained=False, num_classes=3)
    settings = TrainSettings(model=model.settings, mixup=0.4)
    module = EmotionModule(model, settings)
    seen = []
    module.forward = lambda first, second: seen.append(second) or torch.zeros(len(second), 3, requires_grad=True)
    module.log = lambda *args, **kwargs: None
    mel = torch.stack([torch.full((1, 4, 4), float(value)) for value in (0.0, 10.0, 20.0, 30.0)])
    loss = module.training_step((torch.zeros(4, 0), mel, torch.tensor([0, 1, 2, 0])), 0)
    blended = seen[0][:, 0, 0, 0]
    assert not torch.equal(blended, mel[:, 0, 0, 0])  # the clips are blends, not the clips
    assert torch.isclose(loss, torch.tensor(np.log(3.0), dtype=loss.dtype))  # uniform logits: log 3 either way


def test_no_pretrained_chooses_the_from_scratch_recipe_and_keeps_what_was_given():
    base = ["train", "--metadata", "m.csv", "--cache", "c", "--out", "o"]
    paper = _train_settings(build_parser().parse_args(base))
    assert (paper.learning_rate, paper.schedule, paper.mixup) == (5e-5, "constant", 0.0)
    scratch = _train_settings(build_parser().parse_args([*base, "--no-pretrained", "--lr", "3e-4"]))
    assert scratch.learning_rate == 3e-4  # given: kept
    assert (scratch.schedule, scratch.max_epochs, scratch.mixup) == (
        FROM_SCRATCH["schedule"], FROM_SCRATCH["max_epochs"], FROM_SCRATCH["mixup"])
    frozen = _train_settings(build_parser().parse_args([*base, "--no-pretrained", "--freeze-backbones"]))
    assert frozen.schedule == "constant"  # frozen backbones keep the recipe they were given
