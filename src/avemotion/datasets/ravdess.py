"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song: its names and codes.

Every file is named by seven two-digit codes, ``MM-VV-EE-II-SS-RR-AA`` (``03-01-05-01-02-01-12.wav``):
modality (01 audio-video, 02 video only, 03 audio only), vocal channel (01 speech, 02 song),
emotion, intensity (01 normal, 02 strong), statement (01 "Kids are talking by the door",
02 "Dogs are sitting by the door"), repetition (01, 02) and actor (01–24; odd male, even female).
The release's ``Actor_XX/`` folders and a flat folder of the same files read alike. Speech and song
are both indexed; the ``vocal_channel`` column lets a user keep one.
"""

from __future__ import annotations

import re
from pathlib import Path

from avemotion.datasets.listing import Listing, index_by_name

NAME = "ravdess"
# Emotion codes -> canonical names (avemotion.datasets.vocabulary), which are the table's labels.
EMOTION_CODES = {
    "01": "neutral", "02": "calm", "03": "happiness", "04": "sadness",
    "05": "anger", "06": "fear", "07": "disgust", "08": "surprise",
}
LABELS = tuple(sorted(EMOTION_CODES.values()))
MODALITY_CODES = {"01": "audio-video", "02": "video", "03": "audio"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
INTENSITY_CODES = {"01": "normal", "02": "strong"}
STATEMENT_CODES = {"01": "kids", "02": "dogs"}
REPETITION_CODES = {"01": 1, "02": 2}
NAME_HINT = "MODALITY-CHANNEL-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR, e.g. 03-01-05-01-02-01-12"

_CLIP_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
# Each code's place in the name, with its vocabulary.
_CODES = (
    ("modality", MODALITY_CODES), ("vocal channel", VOCAL_CHANNELS), ("emotion", EMOTION_CODES),
    ("intensity", INTENSITY_CODES), ("statement", STATEMENT_CODES), ("repetition", REPETITION_CODES),
)


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is shaped like a RAVDESS file name."""
    return _CLIP_NAME.match(stem) is not None


def parse_clip_name(stem: str) -> dict | None:
    """The row fields a RAVDESS name carries; None when it is not one. Codes outside the vocabulary
    are listed under 'unknown'."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    codes = match.groups()
    unknown = [f"{what} {code!r}" for (what, vocabulary), code in zip(_CODES, codes)
               if code not in vocabulary]
    actor = int(codes[6])
    if not 1 <= actor <= 24:
        unknown.append(f"actor {codes[6]!r}")
    if unknown:
        return {"unknown": unknown}
    modality, channel, emotion, intensity, statement, repetition = (
        vocabulary[code] for (_, vocabulary), code in zip(_CODES, codes))
    return {
        "modality": modality, "vocal_channel": channel, "emotion": emotion, "intensity": intensity,
        "statement": statement, "repetition": repetition, "actor_id": actor,
        "gender": "male" if actor % 2 else "female",
    }


def index_listing(listing: Listing) -> list[dict]:
    """One row per recording: the audio-video, video-only and audio-only files of one performance
    are three clips (each has its own modality)."""
    return index_by_name(listing, parse_clip_name, NAME_HINT, _row)


def _row(stem: str, path: Path, parsed: dict) -> dict:
    with_video = parsed["modality"] != "audio"
    row = {"clip": stem, "dataset": NAME, "modality": parsed["modality"],
           "video_path": str(path) if with_video else "", **parsed}
    if not with_video:
        row["audio_path"] = str(path)
    return row
