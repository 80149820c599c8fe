"""The vocabulary of CREMA-D: emotion, intensity, statement and gender codes, and clip names.

A clip is named ``ACTOR_STATEMENT_EMOTION_INTENSITY`` (``1001_DFA_ANG_XX``) in the original release,
and ``ACTOR_STATEMENT_EMOTION_INTENSITY_GENDER`` (``1001_DFA_ANG_XX_01``) in the converted one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
EMOTION_NAMES = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
INTENSITIES = ("LO", "MD", "HI", "XX")  # XX: unspecified
STATEMENTS = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
GENDERS = ("male", "female", "unknown")
GENDER_CODES = {"01": "male", "02": "female"}  # last code of the converted release's names

# The crowd's votes in summaryTable.csv use one letter per emotion; ties are joined with ':'.
CROWD_VOTE_LETTERS = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}

# In order of preference when one clip exists in several formats.
VIDEO_EXTENSIONS = (".mp4", ".flv", ".webm", ".mov", ".mkv", ".avi")
AUDIO_EXTENSIONS = (".wav", ".mp3")

_CLIP_NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<statement>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<intensity>[A-Z]{2})"
    r"(?:_(?P<gender>\d{2}))?$"
)


@dataclass(frozen=True)
class ClipName:
    """The codes carried by one clip's file name."""

    actor_id: int
    statement: str
    emotion: str
    intensity: str
    gender_code: str | None  # only in the converted release

    @property
    def key(self) -> str:
        """The clip's identity, the same in every format and layout (``1001_DFA_ANG_XX``)."""
        return f"{self.actor_id}_{self.statement}_{self.emotion}_{self.intensity}"

    def unknown_codes(self) -> list[str]:
        """Human-readable descriptions of codes outside the CREMA-D vocabulary."""
        problems = []
        if self.statement not in STATEMENTS:
            problems.append(f"statement {self.statement!r}")
        if self.emotion not in EMOTIONS:
            problems.append(f"emotion {self.emotion!r}")
        if self.intensity not in INTENSITIES:
            problems.append(f"intensity {self.intensity!r}")
        if self.gender_code is not None and self.gender_code not in GENDER_CODES:
            problems.append(f"gender code {self.gender_code!r}")
        return problems


def parse_clip_name(stem: str) -> ClipName | None:
    """Parse a file name without its extension; None when it is not a CREMA-D clip name."""
    match = _CLIP_NAME.match(stem)
    if match is None:
        return None
    return ClipName(
        actor_id=int(match["actor"]),
        statement=match["statement"],
        emotion=match["emotion"],
        intensity=match["intensity"],
        gender_code=match["gender"],
    )


def crowd_vote_to_emotions(vote: str) -> str:
    """Translate a crowd vote such as ``'N'`` or ``'F:N'`` into our codes (``'NEU'``, ``'FEA:NEU'``)."""
    return ":".join(CROWD_VOTE_LETTERS.get(letter, letter) for letter in vote.split(":"))
