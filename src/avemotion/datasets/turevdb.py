"""TurEV-DB, the Turkish Emotion-Voice Database: 1,735 recordings of single words by six actors in
four emotions.

Each file is named ``<speaker>_<emotion>_<word>.wav`` (``1234_kz_gurbuz.wav``), under ``Sound
Source/<Emotion>/``: a four-digit speaker number, then the emotion in Turkish (kz kızgın, angry; sk
sakin, calm; mt mutlu, happy; hl hüzünlü, sad); calm stays calm, as RAVDESS's does. The names carry
no gender. The repository's other folders (its test outputs, filtered copies of the same words)
are not the corpus: index ``Sound Source/``. CC BY-NC-ND 4.0.
"""

from __future__ import annotations

import re

from avemotion.datasets.listing import Listing, index_voices

NAME = "turevdb"
EMOTION_CODES = {"kz": "anger", "sk": "calm", "mt": "happiness", "hl": "sadness"}
LABELS = tuple(sorted(EMOTION_CODES.values()))
NAME_HINT = "<speaker>_<kz|sk|mt|hl>_<word>, e.g. 1234_kz_gurbuz"

_CLIP_NAME = re.compile(r"^(\d{4})_([a-z]{2})_(\w+)$", re.IGNORECASE)


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is shaped like one of TurEV-DB's."""
    return _CLIP_NAME.match(stem) is not None


def parse_clip_name(stem: str) -> dict | None:
    """The row fields a TurEV-DB name carries; None when it is not one."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    if match[2].lower() not in EMOTION_CODES:
        return {"unknown": [f"emotion {match[2]!r}"]}
    return {"actor_id": int(match[1]), "gender": "unknown", "emotion": EMOTION_CODES[match[2].lower()],
            "word": match[3].lower()}


def index_listing(listing: Listing) -> list[dict]:
    """One audio-only row per recording."""
    return index_voices(listing, NAME, parse_clip_name, NAME_HINT)
