"""The linear probe: a last layer fitted in closed form on frozen features.

A multinomial logistic regression with an L2 penalty (scikit-learn's, on features scaled to unit
variance over the training clips), folded into one linear layer: what speech studies do with a
frozen pretrained encoder's pooled features, and what the speaker head of speaker normalisation
(:mod:`avemotion.runtime.speakers`) is. No learning rate, no epochs, no early stopping: the same features
always give the same layer, and every labelled clip (validation speakers too) can train it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# The probe's L2 strength (inverse): strong, for about a thousand clips of a thousand features. On
# RAVDESS's validation speakers (benchmarks/real_speech.py's folds) every C from 0.01 to 1 scored
# within 0.01 of the others, so the choice matters little.
PROBE_C = 0.1
# A class the training clips never show gets this bias, so it is never chosen.
ABSENT_CLASS_BIAS = -1e4


@dataclass(frozen=True)
class LinearLayer:
    """logits = weight · features + bias."""

    weight: np.ndarray  # float32 (classes, D)
    bias: np.ndarray  # float32 (classes,)

    KIND = "linear"

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the layer holds, as arrays (the checkpoint's form)."""
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearLayer:
        return cls(np.asarray(arrays["weight"], np.float32), np.asarray(arrays["bias"], np.float32))

    def to_json(self) -> str:
        return json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist()})

    @classmethod
    def from_json(cls, text: str) -> LinearLayer:
        return cls.from_arrays(json.loads(text))


def fit_logistic_layer(features: np.ndarray, targets: np.ndarray, num_classes: int, C: float) -> LinearLayer:
    """A multinomial logistic regression (L2, inverse strength C, on features scaled to unit
    variance) from features (N, D) to class indices, folded into one linear layer."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    # lbfgs converges in a few hundred steps on a few thousand clips; the default 100 can stop short
    regression = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(features), targets)
    weight = np.zeros((num_classes, features.shape[1]), np.float64)
    bias = np.full(num_classes, ABSENT_CLASS_BIAS)
    coefficients, intercepts = regression.coef_, regression.intercept_
    if len(regression.classes_) == 2:  # scikit-learn keeps one row for two classes: logit of the second
        coefficients = np.stack([-coefficients[0] / 2, coefficients[0] / 2])
        intercepts = np.array([-intercepts[0] / 2, intercepts[0] / 2])
    for row, target in enumerate(regression.classes_):
        weight[target] = coefficients[row] / scaler.scale_
        bias[target] = intercepts[row] - weight[target] @ scaler.mean_
    return LinearLayer(weight.astype(np.float32), bias.astype(np.float32))
