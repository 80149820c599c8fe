"""Stage 1, index: walk a folder of clips (or read a manifest) and build the metadata table, reading
names only.

The walk and the problem report are generic; what a corpus's names mean belongs to its module in
:mod:`avemotion.datasets` (CREMA-D, RAVDESS, a folder per label, a CSV manifest), which is
recognised from the names themselves unless one is named. Every defect found on the way is recorded
as a :class:`Problem`; none stops the walk.

Every table has the columns ``clip`` (a unique name), ``dataset``, ``modality`` (``audio-video``,
``audio`` or ``video``: what the clip has), ``video_path`` (empty without video), ``actor_id`` (the
speaker), ``gender`` and ``emotion`` (the corpus's own label), then whatever the corpus adds; an
``audio_path`` is the voice's own file where it is not the video's track.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# In order of preference when one clip exists in several formats.
VIDEO_EXTENSIONS = (".mp4", ".flv", ".webm", ".mov", ".mkv", ".avi")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
# Files a dataset folder legitimately carries beside its media (readme, licence, other tables).
DOCUMENT_EXTENSIONS = frozenset({".csv", ".txt", ".md", ".pdf", ".json", ".html", ".tab"})
MODALITIES = ("audio-video", "audio", "video")

REQUIRED_COLUMNS = ("clip", "video_path", "actor_id", "gender", "emotion")

# Every kind of problem the index reports, with the sentence that explains it.
PROBLEM_KINDS = {
    "unparseable_name": "media file whose name is not one of the dataset's clip names",
    "unknown_code": "clip name with a code outside the dataset's vocabulary (clip left out)",
    "missing_demographics": "actor missing from the demographics file (gender unknown)",
    "stray_file": "file that is neither media nor a dataset document",
    "unreadable": "folder or metadata file that could not be read",
    "audio_only": "clip with audio but no video (left out of the audio-video table)",
    "duplicate": "clip present more than once (one copy used, the others listed)",
    "missing_file": "file named in the manifest that does not exist (row left out)",
    "missing_label": "manifest row without a label (row left out)",
}
# The kinds that `--strict` turns into a failure; the others describe the data, not a defect.
STRICT_KINDS = frozenset({"unparseable_name", "unknown_code", "missing_demographics", "stray_file",
                          "unreadable", "missing_file", "missing_label"})


@dataclass(frozen=True)
class Problem:
    """One thing the index noticed about one file."""

    path: str
    kind: str  # a key of PROBLEM_KINDS
    detail: str


@dataclass
class IndexResult:
    """The metadata table (one row per clip) and everything noticed on the way."""

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    dataset: str = ""

    def counts(self) -> dict[str, int]:
        """Number of problems of each kind, in PROBLEM_KINDS order, zero counts left out."""
        counted = Counter(problem.kind for problem in self.problems)
        return {kind: counted[kind] for kind in PROBLEM_KINDS if counted[kind]}

    def strict_failures(self) -> list[Problem]:
        """The problems that `--strict` refuses."""
        return [problem for problem in self.problems if problem.kind in STRICT_KINDS]

    def summary(self, examples: int = 3) -> str:
        """A short report: clip and actor counts, then each kind of problem with a few examples."""
        lines = [_clip_counts(self.table)]
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


def _clip_counts(table: pd.DataFrame) -> str:
    """'6 audio-video clips, 1 actors', with a count for each modality present."""
    modalities = table_modalities(table).value_counts()
    clips = [f"{modalities[m]} {m if m == 'audio-video' else m + '-only'} clips"
             for m in MODALITIES if m in modalities]
    actors = table["actor_id"].nunique() if "actor_id" in table else 0
    return ", ".join([*(clips or ["0 clips"]), f"{actors} actors"])


def table_modalities(table: pd.DataFrame) -> pd.Series:
    """Each clip's modality; tables written before the column existed hold audio-video clips."""
    if "modality" not in table:
        return pd.Series("audio-video", index=table.index)
    return table["modality"].fillna("audio-video")


@dataclass
class Listing:
    """What one walk over a dataset folder found: media files, documents, and problems so far."""

    root: Path
    media: list[Path] = field(default_factory=list)
    documents: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def index_dataset(source: str | Path, dataset: str | None = None) -> IndexResult:
    """Index a folder of clips, or a manifest CSV; `dataset` names the corpus instead of recognising
    it from the file names (see :mod:`avemotion.datasets`)."""
    from avemotion import datasets

    source = Path(source).resolve()
    if source.is_file():
        if dataset is not None:
            raise ValueError(f"{source}: a manifest names its own files and labels; --dataset is for folders")
        return datasets.manifest.index_manifest(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder")
    listing = list_folder(source)
    corpus = datasets.corpus(dataset) if dataset else datasets.recognise(listing)
    rows = corpus.index_listing(listing)
    table = pd.DataFrame(rows, columns=table_columns(rows))
    return IndexResult(table=table, problems=listing.problems, dataset=corpus.name)


def list_folder(root: Path) -> Listing:
    """Walk root once and sort every file into media, documents or stray files."""
    listing = Listing(root)

    def unreadable(error: OSError) -> None:
        listing.problems.append(Problem(str(error.filename), "unreadable", error.strerror or str(error)))

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if suffix in VIDEO_EXTENSIONS or suffix in AUDIO_EXTENSIONS:
                listing.media.append(path)
            elif suffix in DOCUMENT_EXTENSIONS:
                listing.documents.append(path)
            else:
                listing.problems.append(Problem(str(path), "stray_file", "not a clip or a dataset document"))
    return listing


def is_video(path: str | Path) -> bool:
    """Whether a media file is a video by its extension (else it is audio)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def media_preference(path: Path) -> tuple[int, Path]:
    """Order of preference among copies of one clip: by extension (mp4 before flv, WAV before
    MP3: the lossless audio is the better source), then by path."""
    order = VIDEO_EXTENSIONS if is_video(path) else AUDIO_EXTENSIONS
    return order.index(path.suffix.lower()), path


def table_columns(rows: list[dict]) -> list[str]:
    """The table's columns: the generic ones first, then the others in the order rows have them."""
    leading = ["clip", "dataset", "modality", *REQUIRED_COLUMNS[1:]]
    seen = dict.fromkeys(leading)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


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
    return table.astype({"clip": str, "emotion": str})
