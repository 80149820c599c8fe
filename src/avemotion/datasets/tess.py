"""TESS, the Toronto Emotional Speech Set: 2,800 recordings of 200 target words in the carrier phrase
"Say the word …", spoken by two actresses (aged 26 and 64) in seven emotions.

Each file is named ``<speaker>_<word>_<emotion>.wav`` (``OAF_back_angry.wav``): the speaker is
``OAF`` (the older talker) or ``YAF`` (the younger), the emotion one of angry, disgust, fear,
happy, neutral, ps (pleasant surprise: a surprise) and sad; the release's folders
(``OAF_angry/`` …) add nothing the name does not say. One file of the original release is named
``OA_bite_neutral.wav``: its speaker is OAF. English; CC BY-NC-ND 4.0.
"""

from __future__ import annotations

import re

from avemotion.datasets.listing import Listing, index_voices

NAME = "tess"
# The names' emotion words -> canonical names (avemotion.datasets.vocabulary), the table's labels.
EMOTION_WORDS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                 "neutral": "neutral", "ps": "surprise", "sad": "sadness"}
LABELS = tuple(sorted(EMOTION_WORDS.values()))
SPEAKERS = {"OAF": "OAF", "YAF": "YAF", "OA": "OAF"}  # OA: the one misnamed file of the original
NAME_HINT = "<OAF|YAF>_<word>_<emotion>, e.g. OAF_back_angry"

_CLIP_NAME = re.compile(r"^(OAF|YAF|OA)_([a-z]+)_([a-z]+)$", re.IGNORECASE)


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is one of TESS's."""
    match = _CLIP_NAME.match(stem)
    return match is not None and match[3].lower() in EMOTION_WORDS


def parse_clip_name(stem: str) -> dict | None:
    """The row fields a TESS name carries; None when it is not one."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    emotion = match[3].lower()
    if emotion not in EMOTION_WORDS:
        return {"unknown": [f"emotion {match[3]!r}"]}
    return {"actor_id": SPEAKERS[match[1].upper()], "gender": "female", "emotion": EMOTION_WORDS[emotion],
            "word": match[2].lower()}


def index_listing(listing: Listing) -> list[dict]:
    """One audio-only row per recording."""
    return index_voices(listing, NAME, parse_clip_name, NAME_HINT)
