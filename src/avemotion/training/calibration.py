"""Calibration by temperature scaling (Guo et al. 2017): one number T that divides a trained
network's logits, chosen to minimise the negative log-likelihood of held-out clips' labels. The
ranking of the labels, and so the accuracy, stays as it is; what changes is how sure the
probabilities say the network is, so that two models' distributions can be averaged as equals
(the ready model's late fusion)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from avemotion.runtime.probabilities import softmax

TEMPERATURE_RANGE = (0.05, 20.0)


def fitted_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature of held-out clips' probabilities (N, labels) as the network gives them (its
    softmax at temperature 1) and their true label indices (N,)."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0))
    rows = np.arange(len(targets))

    def negative_log_likelihood(log_temperature: float) -> float:
        tempered = softmax(logits / np.exp(log_temperature))
        return float(-np.log(np.clip(tempered[rows, targets], 1e-12, 1.0)).mean())

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded").x))
