"""Stage 1, index: walk a folder of clips and build the metadata table, reading names only.

Both CREMA-D layouts work without flags: the original release (``VideoFlash/*.flv``,
``AudioWAV/*.wav``, ``VideoDemographics.csv``, ``processedResults/summaryTable.csv``) and the converted
one (``1001_DFA_ANG_XX_01.mp4``, gender in the last code). Every defect found on the way is recorded as
a :class:`Problem`; none stops the walk.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from avemotion.cremad import (
    AUDIO_EXTENSIONS,
    GENDER_CODES,
    VIDEO_EXTENSIONS,
    ClipName,
    crowd_vote_to_emotions,
    parse_clip_name,
)

DEMOGRAPHICS_FILE = "VideoDemographics.csv"
CROWD_VOTES_FILE = "summaryTable.csv"
# Files a dataset folder legitimately carries beside its media (readme, licence, other tables).
DOCUMENT_EXTENSIONS = frozenset({".csv", ".txt", ".md", ".pdf", ".json", ".html", ".tab"})

# summaryTable.csv column -> our column: the crowd's majority label per modality.
CROWD_VOTE_COLUMNS = {
    "VoiceVote": "crowd_voice_vote",
    "FaceVote": "crowd_face_vote",
    "MultiModalVote": "crowd_av_vote",
}

REQUIRED_COLUMNS = ("video_path", "actor_id", "statement", "emotion", "intensity", "gender")

# Every kind of problem the index reports, with the sentence that explains it.
PROBLEM_KINDS = {
    "unparseable_name": "media file whose name is not a CREMA-D clip name",
    "unknown_code": "clip name with a code outside the CREMA-D vocabulary (clip left out)",
    "missing_demographics": "actor missing from the demographics file (gender unknown)",
    "stray_file": "file that is neither media nor a dataset document",
    "unreadable": "folder or metadata file that could not be read",
    "audio_only": "clip with audio but no video (left out of the audio-video table)",
    "duplicate": "clip present more than once (one copy used, the others listed)",
}
# The kinds that `--strict` turns into a failure; the others describe the data, not a defect.
STRICT_KINDS = frozenset(
    {"unparseable_name", "unknown_code", "missing_demographics", "stray_file", "unreadable"}
)


@dataclass(frozen=True)
class Problem:
    """One thing the index noticed about one file."""

    path: str
    kind: str  # a key of PROBLEM_KINDS
    detail: str


@dataclass
class IndexResult:
    """The metadata table (one row per audio-video clip) and everything noticed on the way."""

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of problems of each kind, in PROBLEM_KINDS order, zero counts left out."""
        counted = Counter(problem.kind for problem in self.problems)
        return {kind: counted[kind] for kind in PROBLEM_KINDS if counted[kind]}

    def strict_failures(self) -> list[Problem]:
        """The problems that `--strict` refuses."""
        return [problem for problem in self.problems if problem.kind in STRICT_KINDS]

    def summary(self, examples: int = 3) -> str:
        """A short report: clip and actor counts, then each kind of problem with a few examples."""
        actors = self.table["actor_id"].nunique()
        lines = [f"{len(self.table)} audio-video clips, {actors} actors"]
        for kind, count in self.counts().items():
            lines.append(f"{count:6d} {PROBLEM_KINDS[kind]}")
            shown = [p for p in self.problems if p.kind == kind][:examples]
            lines += [f"         {p.path}: {p.detail}" for p in shown]
            if count > examples:
                lines.append(f"         … and {count - examples} more")
        return "\n".join(lines)

    def problems_table(self) -> pd.DataFrame:
        """All problems as a table with columns path, kind, detail."""
        return pd.DataFrame(
            [(p.path, p.kind, p.detail) for p in self.problems], columns=["path", "kind", "detail"]
        )


@dataclass
class _Scan:
    """What a walk over the folder found, grouped by clip."""

    videos: dict[str, list[tuple[Path, ClipName]]] = field(default_factory=lambda: defaultdict(list))
    audio: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    demographics: list[Path] = field(default_factory=list)
    crowd_votes: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def index_dataset(data_dir: str | Path) -> IndexResult:
    """Index every clip under data_dir; see the module docstring for the layouts understood."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such folder")
    scan = _scan(data_dir)
    problems = list(scan.problems)
    demographics = _read_first(scan.demographics, read_demographics, problems)
    crowd_votes = _read_first(scan.crowd_votes, read_crowd_votes, problems)
    rows = [
        _clip_row(key, candidates, scan.audio.get(key, []), demographics, crowd_votes, problems)
        for key, candidates in sorted(scan.videos.items())
    ]
    for key in sorted(scan.audio.keys() - scan.videos.keys()):
        problems.append(Problem(str(scan.audio[key][0]), "audio_only", f"no video file for {key}"))
    table = pd.DataFrame(rows, columns=_columns(rows))
    return IndexResult(table=table, problems=problems)


def _scan(data_dir: Path) -> _Scan:
    """Walk data_dir once and sort every file into videos, audio, metadata or problems."""
    scan = _Scan()

    def unreadable(error: OSError) -> None:
        scan.problems.append(Problem(str(error.filename), "unreadable", error.strerror or str(error)))

    for folder, subfolders, files in os.walk(data_dir, onerror=unreadable):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            _sort_file(Path(folder) / name, scan)
    return scan


def _sort_file(path: Path, scan: _Scan) -> None:
    """Put one file where it belongs in the scan."""
    suffix = path.suffix.lower()
    if path.name == DEMOGRAPHICS_FILE:
        scan.demographics.append(path)
    elif path.name == CROWD_VOTES_FILE:
        scan.crowd_votes.append(path)
    elif suffix in VIDEO_EXTENSIONS or suffix in AUDIO_EXTENSIONS:
        _sort_media(path, suffix, scan)
    elif suffix not in DOCUMENT_EXTENSIONS:
        scan.problems.append(Problem(str(path), "stray_file", "not a clip or a dataset document"))


def _sort_media(path: Path, suffix: str, scan: _Scan) -> None:
    """File a media file under its clip, or record why it cannot be."""
    name = parse_clip_name(path.stem)
    if name is None:
        detail = "expected ACTOR_STATEMENT_EMOTION_INTENSITY[_GENDER], e.g. 1001_DFA_ANG_XX"
        scan.problems.append(Problem(str(path), "unparseable_name", detail))
    elif unknown := name.unknown_codes():
        scan.problems.append(Problem(str(path), "unknown_code", "unknown " + ", ".join(unknown)))
    elif suffix in VIDEO_EXTENSIONS:
        scan.videos[name.key].append((path, name))
    else:
        scan.audio[name.key].append(path)


def _clip_row(
    key: str,
    candidates: list[tuple[Path, ClipName]],
    audio_paths: list[Path],
    demographics: pd.DataFrame | None,
    crowd_votes: pd.DataFrame | None,
    problems: list[Problem],
) -> dict:
    """One table row for one clip, choosing among its copies and joining the metadata."""
    candidates = sorted(candidates, key=lambda c: (VIDEO_EXTENSIONS.index(c[0].suffix.lower()), c[0]))
    video_path, name = candidates[0]
    for other, _ in candidates[1:]:
        problems.append(Problem(str(other), "duplicate", f"{key} already indexed as {video_path}"))
    row = {
        "clip": key,
        "video_path": str(video_path),
        "actor_id": name.actor_id,
        "statement": name.statement,
        "emotion": name.emotion,
        "intensity": name.intensity,
        "gender": GENDER_CODES.get(name.gender_code or "", "unknown"),
    }
    if audio_paths:
        row["audio_path"] = str(min(audio_paths, key=_audio_preference))
    if demographics is not None:
        _join_demographics(row, demographics, video_path, problems)
    if crowd_votes is not None and key in crowd_votes.index:
        row.update(crowd_votes.loc[key].to_dict())
    return row


def _audio_preference(path: Path) -> tuple[int, Path]:
    """WAV before MP3: the release's lossless audio is the better source."""
    return AUDIO_EXTENSIONS.index(path.suffix.lower()), path


def _join_demographics(
    row: dict, demographics: pd.DataFrame, video_path: Path, problems: list[Problem]
) -> None:
    """Add age, race, ethnicity and the gender from the demographics file to a row."""
    actor = row["actor_id"]
    if actor not in demographics.index:
        problems.append(Problem(str(video_path), "missing_demographics", f"actor {actor}"))
        return
    actor_row = demographics.loc[actor]
    row["gender"] = actor_row["gender"]
    row.update(age=actor_row["age"], race=actor_row["race"], ethnicity=actor_row["ethnicity"])


def _columns(rows: list[dict]) -> list[str]:
    """The table's columns: the required ones, then the optional ones that any row has."""
    optional = ["audio_path", "age", "race", "ethnicity", *CROWD_VOTE_COLUMNS.values()]
    present = {column for row in rows for column in row}
    return ["clip", *REQUIRED_COLUMNS, *[column for column in optional if column in present]]


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


def write_metadata(table: pd.DataFrame, path: str | Path) -> None:
    """Save the metadata table as CSV, or as Parquet when the name ends in .parquet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Load a metadata table written by `avemotion index` and check its required columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metadata file (make one with `avemotion index`)")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: not an avemotion metadata table, missing columns {missing}")
    return table
