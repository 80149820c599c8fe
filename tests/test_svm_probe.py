"""The SVM probe: a one-vs-rest RBF support-vector machine folded into one kernel layer."""

import numpy as np
import pytest

from avemotion.runtime import svm_probe
from avemotion.runtime.linear_probe import fit_logistic_layer
from avemotion.runtime.probabilities import softmax
from avemotion.runtime.svm_probe import KernelLayer, fit_svm_layer


def rings(count: int, seed: int, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three emotions as three rings around one centre in 8 dimensions (no straight line parts
    them), said by 12 speakers; features, targets, speakers."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 3, count)
    directions = rng.normal(size=(count, 8))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    features = directions * (1.0 + targets)[:, None] + rng.normal(0, noise * (1 + targets)[:, None], (count, 8))
    return features.astype(np.float32), targets, rng.integers(0, 12, count).astype(str)


@pytest.fixture(scope="module")
def fitted():
    features, targets, speakers = rings(240, seed=0)
    return fit_svm_layer(features, targets, 4, speakers)  # a fourth emotion the clips never show


def test_the_svm_parts_what_a_straight_line_cannot(fitted):
    features, targets, _ = rings(240, seed=0)
    test_features, test_targets, _ = rings(300, seed=1)
    linear = fit_logistic_layer(features, targets, 4, C=1.0)
    assert np.mean(linear.logits(test_features).argmax(axis=1) == test_targets) < 0.6
    assert np.mean(fitted.logits(test_features).argmax(axis=1) == test_targets) > 0.88
    assert fitted.C in svm_probe.SVM_CS and 0 < len(fitted.anchors) <= 240


def test_an_emotion_the_clips_never_show_is_never_chosen(fitted):
    probabilities = softmax(fitted.logits(rings(100, seed=2)[0]))
    assert probabilities.shape == (100, 4) and probabilities[:, 3].max() < 1e-6
    assert not fitted.coefficients[3].any()


def test_its_temperature_makes_the_probabilities_honest(fitted):
    """Held out, the mean confidence is close to the accuracy, where the raw decisions' softmax
    is far below it."""
    test_features, test_targets, _ = rings(600, seed=1)
    logits = fitted.logits(test_features)
    accuracy = np.mean(logits.argmax(axis=1) == test_targets)
    assert abs(softmax(logits).max(axis=1).mean() - accuracy) < 0.05
    assert accuracy - softmax(logits * fitted.temperature).max(axis=1).mean() > 0.1


def test_the_layer_survives_json_and_torch_computes_the_same(fitted):
    import torch

    from avemotion.training.models import KernelClassifier

    features = rings(50, seed=5)[0]
    again = KernelLayer.from_json(fitted.to_json())
    assert np.array_equal(again.logits(features), fitted.logits(features)) and again.C == fitted.C
    module = KernelClassifier(8, 4)
    module.load_layer(fitted)
    unfitted = KernelClassifier(8, 4)  # no support vectors: it takes the saved machine's size
    unfitted.load_state_dict(module.state_dict())
    logits = unfitted(torch.from_numpy(features)).numpy()
    assert np.allclose(logits, fitted.logits(features), atol=1e-4)


def test_one_emotion_and_few_speakers_still_fit():
    features, _, _ = rings(20, seed=6)
    alone = fit_svm_layer(features, np.zeros(20, int), 2, speakers=None)
    assert (alone.logits(features).argmax(axis=1) == 0).all()
    features, targets, _ = rings(30, seed=7)
    one_speaker = fit_svm_layer(features, targets, 3, np.full(30, "a"))  # nothing to hold out
    assert one_speaker.temperature == 1.0 and one_speaker.C == svm_probe.SVM_CS[len(svm_probe.SVM_CS) // 2]


def test_a_large_training_set_is_subsampled_to_a_bounded_kernel(monkeypatch):
    monkeypatch.setattr(svm_probe, "MAX_KERNEL_CLIPS", 60)
    features, targets, speakers = rings(200, seed=8)
    layer = fit_svm_layer(features, targets, 3, speakers)
    assert len(layer.anchors) <= 60
    assert np.mean(layer.logits(features).argmax(axis=1) == targets) > 0.75


def test_where_the_kernel_must_leave_rows_out_it_keeps_the_voices_as_recorded(monkeypatch):
    """Copies whose labels mean nothing outnumber the voices they copy: kept first, the 60 voices
    still make the machine (0.79 on new clips, as they score alone); sampled together with the
    copies, they would be a third of it (0.65)."""
    monkeypatch.setattr(svm_probe, "MAX_KERNEL_CLIPS", 70)
    features, targets, speakers = rings(60, seed=9)
    junk_features, _, junk_speakers = rings(140, seed=10)
    junk_targets = np.random.default_rng(11).integers(0, 3, 140)
    copies = np.arange(200) >= 60
    layer = fit_svm_layer(np.concatenate([features, junk_features]), np.concatenate([targets, junk_targets]), 3,
                          np.concatenate([speakers, junk_speakers]), copies=copies)
    test_features, test_targets, _ = rings(300, seed=12)
    assert np.mean(layer.logits(test_features).argmax(axis=1) == test_targets) > 0.75


def test_the_kernel_sample_fills_with_copies_of_every_class_or_samples_the_originals_alone(monkeypatch):
    monkeypatch.setattr(svm_probe, "MAX_KERNEL_CLIPS", 60)
    targets = np.tile(np.arange(3), 50)
    rows = svm_probe._bounded(targets, np.arange(150) >= 30, seed=0)
    assert len(rows) == 60 and set(range(30)) <= set(rows)
    assert np.bincount(targets[rows[30:]], minlength=3).tolist() == [10, 10, 10]
    rows = svm_probe._bounded(targets, np.arange(150) >= 100, seed=0)
    assert len(rows) == 60 and rows.max() < 100
    assert np.array_equal(svm_probe._bounded(targets[:50], np.zeros(50, bool), seed=0), np.arange(50))
