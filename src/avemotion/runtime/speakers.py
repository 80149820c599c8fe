"""Speaker normalisation: each speaker's clip features standardised with that speaker's own statistics
(or corpus normalisation: each corpus's with its own).

Voices differ more from person to person than one person's voice differs from emotion to emotion.
A network trained as usual turns each clip into the vector its last layer reads; with speaker
normalisation each speaker's vectors are then standardised, feature by feature, with the mean and
spread of all that speaker's (unlabelled) clips, which removes much of the person and keeps the
emotion, and a second last layer, a multinomial logistic regression, is fitted on the training
speakers' standardised vectors. This is what speaker-independent studies do with hand-crafted
features, applied to the network's own. It is honest only where several clips of the person are at
hand: such a model judges a folder of one speaker's clips, or a long recording of one person, never
a lone clip.

Corpus normalisation is the same with each corpus in a speaker's place: every corpus of the
training table standardised with its own clips' statistics, and a new corpus (a folder of its clips,
`evaluate --metadata`'s table) with its own. It removes much of what a recording setup, a language
and a set of actors add, and it needs no speaker names, only many clips of one source; across
corpora it gains more than speaker normalisation where a corpus's speakers do not each show
several emotions (docs/results/cross-corpus.md).

Standardising the spectrograms per Mel bin instead helps a network less (docs/results/speech.md
gives both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from avemotion.errors import AvemotionError
from avemotion.runtime.hidden_layer import HiddenLayer
from avemotion.runtime.linear_probe import LinearLayer, fit_logistic_layer
from avemotion.runtime.probabilities import softmax
from avemotion.runtime.svm_probe import KernelLayer, feature_statistics, fit_svm_layer

MIN_SPEAKER_CLIPS = 2  # fewer clips than this give no statistics of the person to standardise with
MIN_SPEAKER_WINDOWS = 4  # a long recording judged window by window needs this many windows' length
# what a normalised model standardises together, and the metadata column that names it for each clip
NORM_GROUPS = {"speaker": "actor_id", "corpus": "dataset"}


class SpeakerNormError(AvemotionError, ValueError):
    """Speaker normalisation asked for where it cannot be honest; the message says what to do."""


def standardised(features: np.ndarray) -> np.ndarray:
    """One speaker's clip features (N, D) standardised with their own mean and spread: float32."""
    features = np.asarray(features, np.float64)
    mean, scale = feature_statistics(features)
    return ((features - mean) / scale).astype(np.float32)


def standardised_by_speaker(features: np.ndarray, speakers, source: str, group: str = "speaker") -> np.ndarray:
    """Every clip's features (N, D) standardised with its speaker's statistics (or its `group`'s,
    NORM_GROUPS), computed from all that speaker's rows; a speaker with too few clips is refused
    with a message naming `source`."""
    speakers = np.asarray([str(speaker) for speaker in speakers])
    _require_enough_clips(speakers, source, group)
    result = np.empty(features.shape, np.float32)
    for name in np.unique(speakers):
        rows = speakers == name
        result[rows] = standardised(features[rows])
    return result


def _require_enough_clips(speakers: np.ndarray, source: str, group: str = "speaker") -> None:
    names, counts = np.unique(speakers, return_counts=True)
    few = names[counts < MIN_SPEAKER_CLIPS]
    if len(few):
        plural = "corpora" if group == "corpus" else f"{group}s"
        raise SpeakerNormError(
            f"{source}: {group} normalisation needs at least {MIN_SPEAKER_CLIPS} clips of each "
            f"{group}; {len(few)} {plural} have fewer (first: {few[0]})")


def clip_groups(table, group: str) -> np.ndarray:
    """Each clip's name of what a `group`-normalised model (NORM_GROUPS) standardises it with: its
    speaker (a table without them refused, as `require_speakers` refuses it), or its corpus (one
    corpus for a table that names none: it is one corpus's table)."""
    if group == "speaker":
        require_speakers(table)
    column = NORM_GROUPS[group]
    if column not in table:
        return np.full(len(table), "corpus")
    return table[column].fillna("").astype(str).to_numpy()


# The last layer of a speaker-normalised model, on the standardised features: a linear layer, or for a
# model whose own last layer is a support-vector machine, one of those too, and for one whose head has
# a hidden layer, a hidden layer.
SpeakerHead = LinearLayer | KernelLayer | HiddenLayer
SPEAKER_HEADS = {LinearLayer.KIND: LinearLayer, KernelLayer.KIND: KernelLayer, HiddenLayer.KIND: HiddenLayer}
SPEAKER_HEAD_C = 1.0  # scikit-learn's default L2 strength for the speaker head's regression


def fit_speaker_head(features: np.ndarray, targets: np.ndarray, num_classes: int,
                     C: float = SPEAKER_HEAD_C) -> LinearLayer:
    """The speaker head: a multinomial logistic regression (L2 with inverse strength C, on features
    scaled to unit variance over all training clips) from standardised features to class indices."""
    return fit_logistic_layer(features, targets, num_classes, C)


def speaker_head_from_arrays(kind: str, arrays: dict[str, np.ndarray]) -> SpeakerHead:
    """A speaker head from its kind and its arrays (a checkpoint's form)."""
    return _head_class(kind).from_arrays(arrays)


def speaker_head_from_json(text: str) -> SpeakerHead:
    """A speaker head from its JSON (an ONNX file's metadata); one without a kind is linear."""
    return _head_class(json.loads(text).get("kind", LinearLayer.KIND)).from_json(text)


def _head_class(kind: str) -> type[SpeakerHead]:
    if kind not in SPEAKER_HEADS:
        raise ValueError(f"a speaker head of unknown kind {kind!r}")
    return SPEAKER_HEADS[kind]


@dataclass(frozen=True)
class SpeakerNormalisation:
    """What a speaker-normalised model does after its network: each clip's features standardised
    with its speaker's statistics, then the speaker head. Training fits it, evaluation, prediction
    and the timeline apply it, all through this one class; the network itself knows nothing of it."""

    head: SpeakerHead

    @classmethod
    def fit(cls, features: np.ndarray, speakers, targets: np.ndarray, fitted_rows: np.ndarray,
            num_classes: int, C: float = SPEAKER_HEAD_C, svm: bool = False,
            group: str = "speaker", held_out=None) -> SpeakerNormalisation:
        """Fitted on the rows `fitted_rows` picks (a boolean mask) of clip features (N, D) whose
        speakers' (or corpora's, `group`) statistics come from all their rows here: a logistic
        regression with inverse strength C, or with `svm` an RBF support-vector machine, its C
        chosen on held-out speakers: the groups themselves under speaker normalisation, those
        `held_out` names under corpus normalisation (folds of clips where it is None)."""
        standardised = standardised_by_speaker(features, speakers, "the training table", group)
        features, targets = standardised[fitted_rows], targets[fitted_rows]
        if svm:
            held_out = speakers if group == "speaker" else held_out
            held_out = None if held_out is None else np.asarray(held_out)[fitted_rows]
            return cls(fit_svm_layer(features, targets, num_classes, held_out))
        return cls(fit_speaker_head(features, targets, num_classes, C))

    def probabilities(self, features: np.ndarray, speakers=None, source: str = "the clips",
                      group: str = "speaker") -> np.ndarray:
        """Each clip's probabilities from its features (N, D): `speakers` name each row's speaker
        (or corpus, `group`), None takes every row as one speaker's (a folder of clips, a long
        recording)."""
        if speakers is None:
            standardised_features = standardised(features)
        else:
            standardised_features = standardised_by_speaker(features, speakers, source, group)
        return softmax(self.head.logits(standardised_features))


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
