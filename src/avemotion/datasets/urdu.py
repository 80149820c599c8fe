"""URDU, emotional speech from Urdu television talk shows: 400 utterances of 29 speakers (by the
ids in the names) in four emotions.

Each file is named ``S<gender><speaker>_F<file>_<emotion><number>.wav`` (``SM1_F10_A010.wav``): the
speaker's gender (M or F) and number, the speaker's file number, then the emotion's letter (A
angry, H happy, N neutral, S sad) and the file's number within that emotion, in a folder named by
the emotion (``Angry/``). ``SM1`` and ``SF1`` are two speakers. Released for research use only.
"""

from __future__ import annotations

import re

from avemotion.datasets.listing import Listing, index_voices

NAME = "urdu"
EMOTION_CODES = {"A": "anger", "H": "happiness", "N": "neutral", "S": "sadness"}
LABELS = tuple(sorted(EMOTION_CODES.values()))
GENDER_CODES = {"M": "male", "F": "female"}
NAME_HINT = "S<M|F><speaker>_F<file>_<A|H|N|S><number>, e.g. SM1_F10_A010"

_CLIP_NAME = re.compile(r"^S([MF])(\d+)_F(\d+)_([A-Z])(\d+)$", re.IGNORECASE)


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is shaped like one of URDU's."""
    return _CLIP_NAME.match(stem) is not None


def parse_clip_name(stem: str) -> dict | None:
    """The row fields an URDU name carries; None when it is not one."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    gender, speaker, emotion = match[1].upper(), int(match[2]), match[4].upper()
    if emotion not in EMOTION_CODES:
        return {"unknown": [f"emotion {match[4]!r}"]}
    return {"actor_id": f"S{gender}{speaker}", "gender": GENDER_CODES[gender], "emotion": EMOTION_CODES[emotion]}


def index_listing(listing: Listing) -> list[dict]:
    """One audio-only row per utterance."""
    return index_voices(listing, NAME, parse_clip_name, NAME_HINT)
