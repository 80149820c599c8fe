"""The hidden-layer probe: one hidden layer fitted on frozen features by a fixed recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avemotion.registry import ModelSettings
from avemotion.runtime.hidden_layer import HiddenLayer
from avemotion.runtime.linear_probe import ABSENT_CLASS_BIAS, fit_logistic_layer
from avemotion.runtime.speakers import speaker_head_from_json
from avemotion.training.hidden_probe import fit_hidden_layer
from avemotion.training.models import HiddenLayerFusion


def exclusive_or(clips: int = 1000, noise_features: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes no straight boundary tells apart (the sign of x times y), on features of very
    different scales, beside features that say nothing."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(-1, 1, (clips, 2))
    targets = (signal[:, 0] * signal[:, 1] > 0).astype(int)
    features = np.concatenate([signal * [100.0, 0.01], rng.normal(0, 1, (clips, noise_features))], axis=1)
    return features.astype(np.float32) + 5.0, targets


def accuracy(layer, features: np.ndarray, targets: np.ndarray) -> float:
    return float((layer.logits(features).argmax(axis=1) == targets).mean())


def test_a_hidden_layer_draws_the_curved_boundary_a_linear_probe_cannot():
    features, targets = exclusive_or()
    test_features, test_targets = exclusive_or(seed=1)
    hidden = fit_hidden_layer(features, targets, 2, width=32, dropout=0.1)
    linear = fit_logistic_layer(features, targets, 2, C=0.1)
    assert accuracy(hidden, test_features, test_targets) >= 0.85
    assert accuracy(linear, test_features, test_targets) <= 0.65


def test_the_same_features_and_seed_give_the_same_layer_and_leave_the_callers_random_state():
    features, targets = exclusive_or(clips=100)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    with torch.no_grad():  # as the training's probe step calls it
        first = fit_hidden_layer(features, targets, 2, width=8)
    assert torch.equal(torch.rand(3), expected_draw)
    second = fit_hidden_layer(features, targets, 2, width=8)
    other_seed = fit_hidden_layer(features, targets, 2, width=8, seed=1)
    assert np.array_equal(first.hidden_weight, second.hidden_weight) and np.array_equal(first.bias, second.bias)
    assert not np.array_equal(first.hidden_weight, other_seed.hidden_weight)


def test_a_class_no_clip_shows_is_never_chosen():
    features, targets = exclusive_or(clips=100)
    layer = fit_hidden_layer(features, targets, 3, width=8)
    assert layer.bias[2] == ABSENT_CLASS_BIAS
    assert (layer.logits(features).argmax(axis=1) < 2).all()


def test_the_network_head_holds_the_fitted_layer_with_its_standardisation_folded_in():
    features, targets = exclusive_or(clips=100)
    layer = fit_hidden_layer(features, targets, 2, width=8)
    settings = ModelSettings("probe", None, None, fusion="mlp", temporal_hidden=8, num_classes=2)
    head = HiddenLayerFusion([features.shape[1]], settings).eval()
    head.load_layer(layer)
    with torch.no_grad():
        logits = head([torch.from_numpy(features)]).numpy()
    assert logits == pytest.approx(layer.logits(features), abs=1e-3)


def test_the_layer_judges_in_numpy_as_torch_does_and_travels_as_arrays_and_json():
    features, targets = exclusive_or(clips=100)
    layer = fit_hidden_layer(features, targets, 2, width=8)
    standardised = torch.from_numpy((features - layer.mean) / layer.scale)
    with torch.no_grad():
        hidden = torch.nn.functional.gelu(standardised @ torch.from_numpy(layer.hidden_weight).T
                                          + torch.from_numpy(layer.hidden_bias))
        expected = (hidden @ torch.from_numpy(layer.weight).T + torch.from_numpy(layer.bias)).numpy()
    assert np.abs(layer.logits(features) - expected).max() < 1e-4
    for again in (HiddenLayer.from_arrays(layer.arrays()), speaker_head_from_json(layer.to_json())):
        assert isinstance(again, HiddenLayer) and np.array_equal(again.logits(features), layer.logits(features))
