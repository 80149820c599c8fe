"""ASED v1, the Amharic Speech Emotion Dataset: 2,474 recordings of 65 speakers in five emotions,
each kept only where at least five of eight judges agreed with its emotion.

Each file is named ``<emotion><folder>-<sentence>-<repetition>-<gender>-<speaker>.wav``
(``a5-03-01-02-50.wav``: the third sentence, first repetition, by speaker 50, male, angry), in a
folder named by the emotion (``05Angry/``): the emotion's letter (n neutral, f fearful, h happy, s
sad, a angry) with its folder's number, the gender 01 female or 02 male. Five speaker numbers carry
both genders in their names; the table keeps each file's own. No licence is stated.
"""

from __future__ import annotations

import re

from avemotion.datasets.listing import Listing, index_voices

NAME = "ased"
EMOTION_CODES = {"n": "neutral", "f": "fear", "h": "happiness", "s": "sadness", "a": "anger"}
LABELS = tuple(sorted(EMOTION_CODES.values()))
GENDER_CODES = {"01": "female", "02": "male"}
NAME_HINT = "<n|f|h|s|a><k>-<sentence>-<repetition>-<01 female|02 male>-<speaker>, e.g. a5-03-01-02-50"

_CLIP_NAME = re.compile(r"^([a-z])(\d)-(\d{2})-(\d{2})-(\d{2})-(\d{2})$", re.IGNORECASE)


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is shaped like one of ASED's."""
    return _CLIP_NAME.match(stem) is not None


def parse_clip_name(stem: str) -> dict | None:
    """The row fields an ASED name carries; None when it is not one."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    letter, _, sentence, repetition, gender, speaker = match.groups()
    unknown = [f"{what} {code!r}" for what, code, known in
               (("emotion", letter, EMOTION_CODES), ("gender", gender, GENDER_CODES)) if code.lower() not in known]
    if unknown:
        return {"unknown": unknown}
    return {"actor_id": int(speaker), "gender": GENDER_CODES[gender], "emotion": EMOTION_CODES[letter.lower()],
            "sentence": int(sentence), "repetition": int(repetition)}


def index_listing(listing: Listing) -> list[dict]:
    """One audio-only row per recording."""
    return index_voices(listing, NAME, parse_clip_name, NAME_HINT)
