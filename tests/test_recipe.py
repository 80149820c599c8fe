"""The from-scratch recipe's parts: speaker normalisation, spectrogram masks, mixup, the recipe choice;
the pretrained still-face recipe's slower backbone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from avemotion.cli import _train_settings, build_parser
from avemotion.config import (
    FROM_SCRATCH,
    FROM_SCRATCH_EFFICIENTNET,
    PRETRAINED_STILL_IMAGE,
    STILL_IMAGE,
    TrainSettings,
)
from avemotion.runtime.probabilities import softmax
from avemotion.runtime.speakers import (
    SpeakerNormError,
    fit_speaker_head,
    require_speakers,
    speaker_head_from_json,
    standardised_by_speaker,
)
from avemotion.training.models import create_model
from avemotion.training.train import EmotionModule, SpectrogramMasks


def test_each_speakers_features_are_standardised_with_that_speakers_statistics():
    rng = np.random.default_rng(0)
    loud = 50.0 + 5.0 * rng.standard_normal((6, 4))  # one speaker's clips far from the other's
    quiet = -3.0 + 0.1 * rng.standard_normal((5, 4))
    quiet[:, 3] = 7.0  # a feature constant over a speaker's clips: centred, not divided by zero
    features = np.concatenate([loud, quiet])
    standardised = standardised_by_speaker(features, ["a"] * 6 + [2] * 5, "test")
    assert standardised.dtype == np.float32 and standardised.shape == features.shape
    for rows in (slice(0, 6), slice(6, 11)):
        assert np.allclose(standardised[rows].mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(standardised[:6].std(axis=0), 1.0, atol=1e-5)
    assert np.allclose(standardised[6:, :3].std(axis=0), 1.0, atol=1e-5)
    assert np.allclose(standardised[6:, 3], 0.0)
    # the same clips in another order give the same rows
    order = rng.permutation(11)
    again = standardised_by_speaker(features[order], np.array(["a"] * 6 + [2] * 5, dtype=object)[order], "test")
    assert np.allclose(again, standardised[order], atol=1e-6)


def test_a_speaker_with_one_clip_is_refused_by_name():
    with pytest.raises(SpeakerNormError, match="table.csv: .*first: lonely"):
        standardised_by_speaker(np.zeros((3, 2)), ["a", "a", "lonely"], "table.csv")


def test_clips_without_a_speaker_are_refused_by_name():
    table = pd.DataFrame({"clip": ["c1", "c2", "c3", "c4"], "actor_id": ["a", "a", None, "b"]})
    with pytest.raises(SpeakerNormError, match="1 clips have none .first: c3"):
        require_speakers(table)
    table["actor_id"] = ["a", "a", "b", "b"]
    require_speakers(table)  # every clip's speaker, two clips each
    with pytest.raises(SpeakerNormError, match="no speaker column"):
        require_speakers(table.drop(columns="actor_id"))


@pytest.mark.parametrize("classes", [2, 3])
def test_the_speaker_head_is_the_logistic_regression_folded_into_one_layer(classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    targets = np.arange(60) % classes
    features = rng.standard_normal((60, 5)) * [1, 10, 0.1, 1, 1] + targets[:, None] * [1, 0, 0, -1, 0]
    head = fit_speaker_head(features, targets, classes + 1)  # the last class never seen in training
    scaler = StandardScaler().fit(features)
    reference = LogisticRegression(max_iter=5000).fit(scaler.transform(features), targets)
    probabilities = softmax(head.logits(features))
    assert head.weight.shape == (classes + 1, 5) and head.bias.shape == (classes + 1,)
    assert np.allclose(probabilities[:, :classes], reference.predict_proba(scaler.transform(features)), atol=1e-4)
    assert np.all(probabilities[:, classes] < 1e-6)  # an unseen class is never chosen
    assert speaker_head_from_json(head.to_json()).logits(features[:3]) == pytest.approx(head.logits(features[:3]))


def test_spectrogram_masks_cover_bands_and_spans_with_the_mean():
    mel = np.arange(64 * 128, dtype=np.float32).reshape(1, 64, 128)
    masks = SpectrogramMasks(2, seed=0)
    masked = [masks(mel) for _ in range(20)]
    assert np.array_equal(mel, np.arange(64 * 128, dtype=np.float32).reshape(1, 64, 128))  # input kept
    changed = [m != mel for m in masked]
    assert any(c.any() for c in changed)
    for m, c in zip(masked, changed):
        assert np.allclose(m[c], mel.mean())
        rows, columns = c[0].all(axis=1).sum(), c[0].all(axis=0).sum()
        assert rows <= 2 * 64 // 8 and columns <= 2 * 128 // 8  # at most two bands of an eighth each
    assert not all(np.array_equal(masked[0], m) for m in masked[1:])  # a new draw every time


class _Masked(torch.utils.data.Dataset):
    def __init__(self, masks) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> np.ndarray:
        return self.masks(np.arange(64 * 128, dtype=np.float32).reshape(1, 64, 128))


def test_spectrogram_masks_differ_between_dataloader_workers():
    def drawn(seed: int) -> list[np.ndarray]:
        loader = torch.utils.data.DataLoader(_Masked(SpectrogramMasks(2, seed=0)), batch_size=1, num_workers=2,
                                             generator=torch.Generator().manual_seed(seed))
        return [batch[0].numpy() for batch in loader]

    masked = drawn(seed=0)  # items 0, 2, 4, 6 from the first worker, 1, 3, 5, 7 from the second
    assert not any(np.array_equal(masked[i], masked[i + 1]) for i in (0, 2, 4, 6))
    assert all(np.array_equal(a, b) for a, b in zip(masked, drawn(seed=0)))  # reproducible with the seed


def test_mixup_blends_the_batch_and_the_loss(monkeypatch):
    torch.manual_seed(0)
    model = create_model("resnet18_vit_lstm_audio_only", pretrained=False, num_classes=3)
    module = EmotionModule(model, TrainSettings(model=model.settings, mixup=0.4))
    share, partner = 0.7, torch.tensor([1, 0, 3, 2])
    monkeypatch.setattr(torch.distributions.Beta, "sample", lambda self: torch.tensor(share))
    monkeypatch.setattr(torch, "randperm", lambda n, device=None: partner)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 3.0], [1.0, 2.0, 1.0]],
                          requires_grad=True)
    seen = []
    module.forward = lambda inputs: seen.append(inputs["mel"]) or logits
    module.log = lambda *args, **kwargs: None
    mel = torch.stack([torch.full((1, 4, 4), float(value)) for value in (0.0, 10.0, 20.0, 30.0)])
    target = torch.tensor([0, 1, 2, 0])
    loss = module.training_step(({"mel": mel}, target), 0)
    assert torch.allclose(seen[0], share * mel + (1 - share) * mel[partner])
    cross_entropy = torch.nn.functional.cross_entropy
    expected = share * cross_entropy(logits, target) + (1 - share) * cross_entropy(logits, target[partner])
    assert torch.isclose(loss, expected)
    assert not torch.isclose(loss, cross_entropy(logits, target))  # the partners' labels count


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


def test_an_efficientnet_on_the_spectrogram_from_scratch_gets_its_max_pooled_stem_and_learning_rate():
    base = ["train", "--metadata", "m.csv", "--cache", "c", "--out", "o", "--no-pretrained"]
    chosen = {name: _train_settings(build_parser().parse_args([*base, "--model", name]))
              for name in ("effnet_lstm_audio_only", "effnet_lstm", "resnet18_vit_lstm_audio_only",
                           "effnet_lstm_video_only")}
    for name in ("effnet_lstm_audio_only", "effnet_lstm"):  # an EfficientNet reads the spectrogram
        assert chosen[name].model.stem_max_pool
        assert chosen[name].learning_rate == FROM_SCRATCH_EFFICIENTNET["learning_rate"]
    for name in ("resnet18_vit_lstm_audio_only", "effnet_lstm_video_only"):  # none does
        assert not chosen[name].model.stem_max_pool
        assert chosen[name].learning_rate == FROM_SCRATCH["learning_rate"]
    given = _train_settings(build_parser().parse_args([*base, "--model", "effnet_lstm_audio_only", "--lr", "1e-3"]))
    assert given.learning_rate == 1e-3 and given.model.stem_max_pool  # what a user gives wins
    paper = _train_settings(build_parser().parse_args([*base[:-1], "--model", "effnet_lstm_audio_only"]))
    assert not paper.model.stem_max_pool  # ImageNet weights keep the backbone they were trained as


def test_a_pretrained_face_model_is_fine_tuned_with_its_backbone_slower_than_its_head():
    base = ["train", "--metadata", "m.csv", "--cache", "c", "--out", "o", "--model"]
    pretrained = _train_settings(build_parser().parse_args([*base, "mobilenetv2_face"]))
    scratch = _train_settings(build_parser().parse_args([*base, "resnet18_face"]))
    assert (pretrained.learning_rate, pretrained.backbone_lr_scale, pretrained.max_epochs) == (
        PRETRAINED_STILL_IMAGE["learning_rate"], PRETRAINED_STILL_IMAGE["backbone_lr_scale"],
        PRETRAINED_STILL_IMAGE["max_epochs"])
    assert pretrained.schedule == "onecycle" and pretrained.jitter_frames  # its warm-up, its augmentation
    assert (scratch.learning_rate, scratch.backbone_lr_scale) == (STILL_IMAGE["learning_rate"], 1.0)
    asked = _train_settings(build_parser().parse_args([*base, "efficientnet_b0_face", "--pretrained"]))
    assert (asked.learning_rate, asked.backbone_lr_scale) == (2e-3, 0.25)  # any face model from ImageNet
    given = _train_settings(build_parser().parse_args([*base, "mobilenetv2_face", "--backbone-lr-scale", "1"]))
    assert given.backbone_lr_scale == 1.0  # what a user gives wins

    model = create_model("mobilenetv2_face", pretrained=False, image_size=32)
    model.settings = replace(model.settings, pretrained=True)  # as if from ImageNet, without the hub
    groups = EmotionModule(model, pretrained)._parameter_groups()  # what AdamW and the one cycle peak at
    backbone = {id(parameter) for parameter in model.encoders["video"].backbone.parameters()}
    rates = {("backbone" if id(parameter) in backbone else "head"): group["lr"]
             for group in groups for parameter in group["params"]}
    assert rates == {"head": 2e-3, "backbone": 2e-3 * 0.25}
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))
