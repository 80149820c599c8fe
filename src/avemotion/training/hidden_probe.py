"""The hidden-layer probe: a last layer with one hidden layer, fitted on frozen features by a fixed recipe.

Between the linear probe (:mod:`avemotion.runtime.linear_probe`: straight boundaries, 0.3 MB over
Whisper base's every layer) and the SVM probe (:mod:`avemotion.runtime.svm_probe`: curved ones, but
its support vectors take 163 MB on CREMA-D) lies one hidden layer: curved boundaries in a few
megabytes, which the ready model ships. Like the other probes it is fitted on every labelled
training clip (validation speakers too), by a recipe that never looks at a held-out clip: AdamW
over a fixed number of epochs on a one-cycle schedule, dropout before and after the hidden layer,
label smoothing. The recipe was chosen on RAVDESS's speaker-independent folds and confirmed on
CREMA-D's (docs/studies/compact-voice-head.md). The same features and seed give the same layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from avemotion.runtime.hidden_layer import HiddenLayer
from avemotion.runtime.linear_probe import ABSENT_CLASS_BIAS
from avemotion.runtime.svm_probe import feature_statistics

EPOCHS = 60
LEARNING_RATE = 1e-3  # the one-cycle schedule's peak
WEIGHT_DECAY = 0.05
BATCH_SIZE = 64
LABEL_SMOOTHING = 0.1


def fit_hidden_layer(features: np.ndarray, targets: np.ndarray, num_classes: int, width: int = 256,
                     dropout: float = 0.5, seed: int = 0, epochs: int = EPOCHS) -> HiddenLayer:
    """One hidden layer (`width` wide, GELU) from features (N, D) to class indices, trained by the
    fixed recipe on standardised features. The caller's random state is left as it was."""
    features = np.asarray(features, np.float32)
    mean, scale = feature_statistics(features)
    inputs = torch.from_numpy((features - mean) / scale)
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hidden, classifier = nn.Linear(inputs.shape[1], width), nn.Linear(width, num_classes)
        network = nn.Sequential(nn.Dropout(dropout), hidden, nn.GELU(), nn.Dropout(dropout), classifier)
        _train(network, inputs, labels, epochs)
    bias = classifier.bias.detach().numpy().copy()
    bias[np.setdiff1d(np.arange(num_classes), labels.numpy())] = ABSENT_CLASS_BIAS
    return HiddenLayer(mean, scale, *(tensor.detach().numpy().copy() for tensor in
                                      (hidden.weight, hidden.bias, classifier.weight)), bias)


def _train(network: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
    """The recipe: `epochs` passes over the clips in shuffled batches, AdamW on a one-cycle schedule."""
    batches = -(-len(inputs) // BATCH_SIZE)
    optimiser = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=epochs * batches)
    network.train()
    with torch.enable_grad():  # whatever the caller's mode (a probe is fitted under no_grad)
        for _ in range(epochs):
            for batch in torch.randperm(len(inputs)).split(BATCH_SIZE):
                loss = nn.functional.cross_entropy(network(inputs[batch]), labels[batch],
                                                   label_smoothing=LABEL_SMOOTHING)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
    network.eval()
