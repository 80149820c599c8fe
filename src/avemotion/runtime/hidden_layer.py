"""One hidden layer between standardised features and logits, in numpy: what the hidden-layer probe
(:mod:`avemotion.training.hidden_probe`) fits, and what a speaker- or corpus-normalised model whose
head has a hidden layer judges with after its network (:mod:`avemotion.runtime.speakers`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class HiddenLayer:
    """logits = weight · gelu(hidden_weight · z + hidden_bias) + bias, for the features z
    standardised with the training clips' mean and scale."""

    mean: np.ndarray  # float32 (D,)
    scale: np.ndarray  # float32 (D,)
    hidden_weight: np.ndarray  # float32 (width, D)
    hidden_bias: np.ndarray  # float32 (width,)
    weight: np.ndarray  # float32 (classes, width)
    bias: np.ndarray  # float32 (classes,)

    KIND = "hidden"

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """The hidden layer's weight and bias on the features as given (the standardisation folded
        in): what a network that reads those features holds."""
        weight = self.hidden_weight / self.scale
        return weight, self.hidden_bias - weight @ self.mean

    def logits(self, features: np.ndarray) -> np.ndarray:
        standardised = (np.asarray(features, np.float32) - self.mean) / self.scale
        return gelu(standardised @ self.hidden_weight.T + self.hidden_bias) @ self.weight.T + self.bias

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the layer holds, as arrays (the checkpoint's form)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> HiddenLayer:
        return cls(**{field.name: np.asarray(arrays[field.name], np.float32) for field in fields(cls)})

    def to_json(self) -> str:
        return json.dumps({"kind": self.KIND, **{name: array.tolist() for name, array in self.arrays().items()}})

    @classmethod
    def from_json(cls, text: str) -> HiddenLayer:
        return cls.from_arrays(json.loads(text))


def gelu(values: np.ndarray) -> np.ndarray:
    """The Gaussian error linear unit, as torch's nn.GELU computes it (with the exact erf)."""
    return (0.5 * values * (1.0 + erf(values / np.sqrt(2.0)))).astype(np.float32)


def erf(values: np.ndarray) -> np.ndarray:
    """The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26), which numpy lacks."""
    x = np.abs(values).astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * x)
    polynomial = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(values) * (1.0 - polynomial * np.exp(-x * x))
