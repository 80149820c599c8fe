"""What the index and the corpus modules share: a walked folder's listing, the problems found on
the way, the indexed table's result, and the media extensions. Kept below both, so that each corpus
module and the index can import it without importing each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from avemotion.media.inputs import CLIP_MODALITIES

# In order of preference when one clip exists in several formats.
VIDEO_EXTENSIONS = (".mp4", ".flv", ".webm", ".mov", ".mkv", ".avi")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
# Still images: a face image is a clip of one frame and no voice (modality `image`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS + IMAGE_EXTENSIONS
# Files a dataset folder legitimately carries beside its media (readme, licence, other tables).
DOCUMENT_EXTENSIONS = frozenset({".csv", ".txt", ".md", ".pdf", ".json", ".html", ".tab"})
MODALITIES = tuple(CLIP_MODALITIES)  # the values of a table's `modality` column

REQUIRED_COLUMNS = ("clip", "video_path", "actor_id", "gender", "emotion")

# Every kind of problem the index reports, with the sentence that explains it.
PROBLEM_KINDS = {
    "unparseable_name": "media file whose name is not one of the dataset's clip names",
    "unknown_code": "clip name with a code outside the dataset's vocabulary (clip left out)",
    "missing_demographics": "actor missing from the demographics file (gender unknown)",
    "stray_file": "file that is neither media nor a dataset document",
    "unreadable": "folder or metadata file that could not be read",
    "broken_link": "symbolic link to a file that does not exist",
    "link_cycle": "folder reached again through symbolic links (walked once)",
    "audio_only": "clip with audio but no video (left out of the audio-video table)",
    "duplicate": "clip present more than once (one copy used, the others listed)",
    "augmented_copy": "augmented copy of another image, not part of the corpus (left out)",
    "missing_file": "file named in the manifest that does not exist (row left out)",
    "missing_label": "manifest row without a label (row left out)",
    "malformed_row": "manifest row with more or fewer fields than its header (row left out)",
}
# The kinds that `--strict` turns into a failure; the others describe the data, not a defect.
STRICT_KINDS = frozenset({"unparseable_name", "unknown_code", "missing_demographics", "stray_file",
                          "unreadable", "missing_file", "missing_label", "malformed_row"})


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
    clips = [f"{modalities[m]} {m if m in ('audio-video', 'image') else m + '-only'} clips"
             for m in MODALITIES if m in modalities]
    named = table["actor_id"].astype(str).replace("nan", "") if "actor_id" in table else pd.Series(dtype=str)
    actors = named[named != ""].nunique()
    return ", ".join([*(clips or ["0 clips"]), f"{actors} actors" if actors else "no actor ids"])


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


def is_video(path: str | Path) -> bool:
    """Whether a media file is a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image(path: str | Path) -> bool:
    """Whether a media file is a still image by its extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def modality_of_file(path: str | Path) -> str:
    """The modality a media file gives by default: a video has a voice, an audio file is audio
    only, an image is one still frame."""
    return "image" if is_image(path) else "audio-video" if is_video(path) else "audio"


def media_preference(path: Path) -> tuple[int, Path]:
    """Order of preference among copies of one clip: by extension (mp4 before flv, WAV before
    MP3: the lossless audio is the better source), then by path."""
    order = VIDEO_EXTENSIONS if is_video(path) else IMAGE_EXTENSIONS if is_image(path) else AUDIO_EXTENSIONS
    return order.index(path.suffix.lower()), path


def table_columns(rows: list[dict]) -> list[str]:
    """The table's columns: the generic ones first, then the others in the order rows have them."""
    leading = ["clip", "dataset", "modality", *REQUIRED_COLUMNS[1:]]
    seen = dict.fromkeys(leading)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def index_by_name(listing: Listing, parse: Callable[[str], dict | None], hint: str,
                  row: Callable[[str, Path, dict], dict]) -> list[dict]:
    """The rows of a corpus whose file names carry every field: `parse` reads a name (without its
    extension) into the row's fields, None when it is not one of the corpus's names, or
    ``{"unknown": [...]}`` naming the codes outside its vocabulary; `row` makes the row of a name,
    its file and its fields. Names it cannot read and second copies of a clip (WAV kept before MP3)
    are reported, not indexed."""
    chosen: dict[str, tuple[Path, dict]] = {}
    for path in sorted(listing.media, key=media_preference):
        parsed = parse(path.stem)
        if parsed is None:
            listing.problems.append(Problem(str(path), "unparseable_name", f"expected {hint}"))
        elif "unknown" in parsed:
            listing.problems.append(Problem(str(path), "unknown_code", "unknown " + ", ".join(parsed["unknown"])))
        elif path.stem in chosen:
            listing.problems.append(Problem(str(path), "duplicate", f"{path.stem} already indexed as "
                                            f"{chosen[path.stem][0]}"))
        else:
            chosen[path.stem] = path, parsed
    return [row(stem, *chosen[stem]) for stem in sorted(chosen)]


def index_voices(listing: Listing, dataset: str, parse: Callable[[str], dict | None], hint: str) -> list[dict]:
    """The rows of a corpus of voices alone (index_by_name), each audio file an audio-only clip; an
    image or a video among them is reported, not indexed."""
    voices = [path for path in listing.media if modality_of_file(path) == "audio"]
    listing.problems += [Problem(str(path), "stray_file", f"{dataset} holds voices alone")
                         for path in listing.media if modality_of_file(path) != "audio"]

    def row(stem: str, path: Path, fields: dict) -> dict:
        return {"clip": stem, "dataset": dataset, "modality": "audio", "video_path": "", "audio_path": str(path),
                **fields}

    return index_by_name(replace(listing, media=voices), parse, hint, row)
