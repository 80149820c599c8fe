"""CREMA-D: its codes, its clip names, its metadata files, and how its folders become a table.

A clip is named ``ACTOR_STATEMENT_EMOTION_INTENSITY`` (``1001_DFA_ANG_XX``) in the original release,
and ``ACTOR_STATEMENT_EMOTION_INTENSITY_GENDER`` (``1001_DFA_ANG_XX_01``) in the converted one. Both
layouts work without flags: the original release (``VideoFlash/*.flv``, ``AudioWAV/*.wav``,
``VideoDemographics.csv``, ``processedResults/summaryTable.csv``) and the converted one
(``1001_DFA_ANG_XX_01.mp4``, gender in the last code). A voice whose clip has no video is reported
and left out, unless the folder has no video at all: then it is an audio-only corpus (``AudioWAV``
alone) and every voice is a clip.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from avemotion.datasets.listing import Listing, Problem, is_video, media_preference

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
INTENSITIES = ("LO", "MD", "HI", "XX")  # XX: unspecified
STATEMENTS = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
GENDERS = ("male", "female", "unknown")
GENDER_CODES = {"01": "male", "02": "female"}  # last code of the converted release's names

# The crowd's votes in summaryTable.csv use one letter per emotion; ties are joined with ':'.
CROWD_VOTE_LETTERS = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}

NAME = "crema-d"
LABELS = EMOTIONS  # the labels a model trained on CREMA-D predicts, in this order
NAME_HINT = "ACTOR_STATEMENT_EMOTION_INTENSITY[_GENDER], e.g. 1001_DFA_ANG_XX"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
CROWD_VOTES_FILE = "summaryTable.csv"

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


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is shaped like a CREMA-D clip name."""
    return _CLIP_NAME.match(stem) is not None


# summaryTable.csv column -> our column: the crowd's majority label per modality.
CROWD_VOTE_COLUMNS = {
    "VoiceVote": "crowd_voice_vote",
    "FaceVote": "crowd_face_vote",
    "MultiModalVote": "crowd_av_vote",
}


def index_listing(listing: Listing) -> list[dict]:
    """The table's rows for a CREMA-D folder: one per clip with a video (or per voice in a folder
    without video), joined with the demographics and the crowd's votes where the folder has them."""
    videos, voices = _clips(listing)
    problems = listing.problems
    demographics = _read_first(_named(listing, DEMOGRAPHICS_FILE), read_demographics, problems)
    crowd_votes = _read_first(_named(listing, CROWD_VOTES_FILE), read_crowd_votes, problems)
    if not videos:  # an audio-only release (AudioWAV alone): every voice is a clip
        videos, voices = voices, {}
    rows = [_clip_row(key, copies, voices.get(key, []), problems)
            for key, copies in sorted(videos.items())]
    for row in rows:
        if demographics is not None:
            _join_demographics(row, demographics, problems)
        if crowd_votes is not None and row["clip"] in crowd_votes.index:
            row.update(crowd_votes.loc[row["clip"]].to_dict())
    for key in sorted(voices.keys() - videos.keys()):
        problems.append(Problem(str(voices[key][0][0]), "audio_only", f"no video file for {key}"))
    return rows


def _clips(listing: Listing) -> tuple[dict, dict]:
    """Clip key -> [(path, name)] for the videos and for the voices; bad names become problems."""
    videos, voices = defaultdict(list), defaultdict(list)
    for path in listing.media:
        name = parse_clip_name(path.stem)
        if name is None:
            listing.problems.append(Problem(str(path), "unparseable_name", f"expected {NAME_HINT}"))
        elif unknown := name.unknown_codes():
            listing.problems.append(Problem(str(path), "unknown_code", "unknown " + ", ".join(unknown)))
        else:
            (videos if is_video(path) else voices)[name.key].append((path, name))
    return videos, voices


def _named(listing: Listing, file_name: str) -> list[Path]:
    return [path for path in listing.documents if path.name == file_name]


def _clip_row(key: str, copies: list[tuple[Path, ClipName]], voices: list[tuple[Path, ClipName]],
              problems: list[Problem]) -> dict:
    """One table row for one clip, choosing among its copies."""
    copies = sorted(copies, key=lambda copy: media_preference(copy[0]))
    path, name = copies[0]
    for other, _ in copies[1:]:
        problems.append(Problem(str(other), "duplicate", f"{key} already indexed as {path}"))
    with_video = is_video(path)
    row = {
        "clip": key,
        "dataset": NAME,
        "modality": "audio-video" if with_video else "audio",
        "video_path": str(path) if with_video else "",
        "actor_id": name.actor_id,
        "statement": name.statement,
        "emotion": name.emotion,
        "intensity": name.intensity,
        "gender": GENDER_CODES.get(name.gender_code or "", "unknown"),
    }
    if not with_video:
        row["audio_path"] = str(path)
    elif voices:
        row["audio_path"] = str(min((voice for voice, _ in voices), key=media_preference))
    return row


def _join_demographics(row: dict, demographics: pd.DataFrame, problems: list[Problem]) -> None:
    """Add age, race, ethnicity and the gender from the demographics file to a row."""
    actor = row["actor_id"]
    if actor not in demographics.index:
        path = row["video_path"] or row["audio_path"]
        problems.append(Problem(path, "missing_demographics", f"actor {actor}"))
        return
    actor_row = demographics.loc[actor]
    row["gender"] = actor_row["gender"]
    row.update(age=actor_row["age"], race=actor_row["race"], ethnicity=actor_row["ethnicity"])


def _read_first(paths: list[Path], reader, problems: list[Problem]) -> pd.DataFrame | None:
    """Read the first metadata file of a kind; an unreadable one is a problem, not a crash."""
    for path in paths[1:]:
        problems.append(Problem(str(path), "duplicate", f"second metadata file, {paths[0]} used"))
    if not paths:
        return None
    try:
        return reader(paths[0])
    except (OSError, ValueError, KeyError) as error:
        problems.append(Problem(str(paths[0]), "unreadable", f"{type(error).__name__}: {error}"))
        return None


def read_demographics(path: str | Path) -> pd.DataFrame:
    """Read VideoDemographics.csv into a table indexed by actor id with gender/age/race/ethnicity."""
    table = pd.read_csv(path)
    missing = {"ActorID", "Age", "Sex", "Race", "Ethnicity"} - set(table.columns)
    if missing:
        raise ValueError(f"missing columns {sorted(missing)}")
    gender = table["Sex"].str.strip().str.lower().where(lambda s: s.isin(["male", "female"]))
    return pd.DataFrame(
        {
            "gender": gender.fillna("unknown").to_numpy(),
            "age": table["Age"].to_numpy(),
            "race": table["Race"].to_numpy(),
            "ethnicity": table["Ethnicity"].to_numpy(),
        },
        index=table["ActorID"].astype(int),
    )


def read_crowd_votes(path: str | Path) -> pd.DataFrame:
    """Read summaryTable.csv into a table indexed by clip with the crowd's votes in our codes."""
    table = pd.read_csv(path, dtype=str)
    missing = {"FileName", *CROWD_VOTE_COLUMNS} - set(table.columns)
    if missing:
        raise ValueError(f"missing columns {sorted(missing)}")
    votes = table.set_index("FileName")[list(CROWD_VOTE_COLUMNS)].rename(columns=CROWD_VOTE_COLUMNS)
    return votes.fillna("").map(crowd_vote_to_emotions)
