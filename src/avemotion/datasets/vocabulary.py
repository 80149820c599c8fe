"""One emotion vocabulary for every corpus, so that models trained on one corpus can be scored on another.

Each corpus names its emotions its own way (CREMA-D ``ANG``, RAVDESS code ``05``, a manifest
``angry``); :func:`canonical` maps all of them onto the names below. Labels outside it keep their own
name, lower-cased, and only ever match themselves.
"""

from __future__ import annotations

CANONICAL_EMOTIONS = (
    "anger", "boredom", "calm", "contempt", "disgust", "fear", "happiness", "neutral", "sadness",
    "surprise",
)

# Spellings found in the field's corpora and manifests -> canonical name.
_SYNONYMS = {
    "anger": ("ang", "angry", "mad", "anger"),
    "boredom": ("bor", "bored", "boredom"),
    "calm": ("cal", "calm"),
    "contempt": ("con", "contempt"),
    "disgust": ("dis", "disgusted", "disgust"),
    "fear": ("fea", "fearful", "afraid", "scared", "fear"),
    "happiness": ("hap", "happy", "joy", "happiness"),
    "neutral": ("neu", "neutral"),
    "sadness": ("sad", "sadness"),
    "surprise": ("sur", "surprised", "surprise"),
}
_CANONICAL_OF = {spelling: name for name, spellings in _SYNONYMS.items() for spelling in spellings}


def canonical(label: str) -> str:
    """The canonical name of a corpus's label ('ANG' -> 'anger', 'Happy' -> 'happiness'); a label
    outside the vocabulary keeps its own name, lower-cased."""
    text = str(label).strip().lower()
    return _CANONICAL_OF.get(text, text)


def shared_labels(model_labels: list[str], data_labels: list[str]) -> tuple[dict[str, str], list[str]]:
    """How a corpus's labels meet a model's: {data label: model label} for every data label whose
    canonical name the model also has, and the data labels it does not have."""
    model_by_name = {canonical(label): label for label in model_labels}
    mapping, left_out = {}, []
    for label in sorted(set(data_labels)):
        name = canonical(label)
        if name in model_by_name:
            mapping[label] = model_by_name[name]
        else:
            left_out.append(label)
    return mapping, left_out
