"""Speaker normalisation: each speaker's clip features standardised with that speaker's own statistics.

Voices differ more from person to person than one person's voice differs from emotion to emotion.
A network trained as usual turns each clip into the vector its last layer reads; with speaker
normalisation each speaker's vectors are then standardised, feature by feature, with the mean and
spread of all that speaker's (unlabelled) clips, which removes much of the person and keeps the
emotion, and a second last layer, a multinomial logistic regression, is fitted on the training
speakers' standardised vectors. This is what speaker-independent studies do with hand-crafted
features, applied to the network's own. It is honest only where several clips of the person are at
hand: such a model judges a folder of one speaker's clips, or a long recording of one person, never
a lone clip.

Standardising the spectrograms per Mel bin instead helps a network less (the README's results on
real speech give both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from avemotion.errors import AvemotionError

MIN_SPEAKER_CLIPS = 2  # fewer clips than this give no statistics of the person to standardise with
MIN_STD = 1e-6  # a feature (nearly) constant over a speaker's clips is centred, not scaled


class SpeakerNormError(AvemotionError, ValueError):
    """Speaker normalisation asked for where it cannot be honest; the message says what to do."""


def standardised(features: np.ndarray) -> np.ndarray:
    """One speaker's clip features (N, D) standardised with their own mean and spread: float32."""
    features = np.asarray(features, np.float64)
    std = features.std(axis=0)
    std[std < MIN_STD] = 1.0
    return ((features - features.mean(axis=0)) / std).astype(np.float32)


def standardised_by_speaker(features: np.ndarray, speakers, source: str) -> np.ndarray:
    """Every clip's features (N, D) standardised with its speaker's statistics, computed from all
    that speaker's rows; a speaker with too few clips is refused with a message naming `source`."""
    speakers = np.asarray([str(speaker) for speaker in speakers])
    _require_enough_clips(speakers, source)
    result = np.empty(features.shape, np.float32)
    for name in np.unique(speakers):
        rows = speakers == name
        result[rows] = standardised(features[rows])
    return result


def _require_enough_clips(speakers: np.ndarray, source: str) -> None:
    names, counts = np.unique(speakers, return_counts=True)
    few = names[counts < MIN_SPEAKER_CLIPS]
    if len(few):
        raise SpeakerNormError(
            f"{source}: speaker normalisation needs at least {MIN_SPEAKER_CLIPS} clips of each "
            f"speaker; {len(few)} speakers have fewer (first: {few[0]})")


@dataclass(frozen=True)
class SpeakerHead:
    """The last layer of a speaker-normalised model: logits = weight · standardised features + bias."""

    weight: np.ndarray  # float32 (classes, D)
    bias: np.ndarray  # float32 (classes,)

    def logits(self, standardised_features: np.ndarray) -> np.ndarray:
        return standardised_features @ self.weight.T + self.bias

    def to_json(self) -> str:
        return json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist()})

    @classmethod
    def from_json(cls, text: str) -> SpeakerHead:
        values = json.loads(text)
        return cls(np.asarray(values["weight"], np.float32), np.asarray(values["bias"], np.float32))


# A class the training speakers never show gets this bias, so it is never chosen.
ABSENT_CLASS_BIAS = -1e4


def fit_speaker_head(features: np.ndarray, targets: np.ndarray, num_classes: int) -> SpeakerHead:
    """A multinomial logistic regression (scikit-learn's, L2 with C = 1, on features scaled to unit
    variance over all training clips) from standardised features to class indices, folded into
    one linear layer."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    # lbfgs converges in a few hundred steps on a few thousand clips; the default 100 can stop short
    regression = LogisticRegression(max_iter=5000).fit(scaler.transform(features), targets)
    weight = np.zeros((num_classes, features.shape[1]), np.float64)
    bias = np.full(num_classes, ABSENT_CLASS_BIAS)
    coefficients, intercepts = regression.coef_, regression.intercept_
    if len(regression.classes_) == 2:  # scikit-learn keeps one row for two classes: logit of the second
        coefficients = np.stack([-coefficients[0] / 2, coefficients[0] / 2])
        intercepts = np.array([-intercepts[0] / 2, intercepts[0] / 2])
    for row, target in enumerate(regression.classes_):
        weight[target] = coefficients[row] / scaler.scale_
        bias[target] = intercepts[row] - weight[target] @ scaler.mean_
    return SpeakerHead(weight.astype(np.float32), bias.astype(np.float32))


def require_speakers(table, source: str = "the table") -> None:
    """Refuse, before any work, a table without speakers, with clips of no speaker, or with a
    speaker of too few clips."""
    unknown = table["actor_id"].isna() | (table["actor_id"].astype(str) == "") if "actor_id" in table else None
    if unknown is None or unknown.all():
        raise SpeakerNormError("speaker normalisation needs each clip's speaker: this table has no "
                               "speaker column (actor_id; `speaker` in a manifest)")
    if unknown.any():
        first = table["clip"][unknown].iloc[0]
        raise SpeakerNormError(f"{source}: speaker normalisation needs each clip's speaker; "
                               f"{int(unknown.sum())} clips have none (first: {first})")
    _require_enough_clips(np.asarray([str(speaker) for speaker in table["actor_id"]]), source)
