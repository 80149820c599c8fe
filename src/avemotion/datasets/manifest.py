"""Any other corpus: a CSV manifest, or a folder per label.

A manifest is a CSV with a ``path`` and a ``label`` column (a path relative to the CSV's folder, or
absolute), and optionally ``speaker``, ``audio_path`` (a separate voice file for a video),
``gender`` and ``modality`` (``audio-video``, ``audio``, ``video`` or ``image``: by default a video
file has a voice, an audio file is audio only and an image is a still face); any other column is
kept as it is (a ``split`` column is what ``--split given`` reads).

A folder per label is ``DIR/<label>/*.wav|mp4|jpg…``, or ``DIR/<label>/<speaker>/*…`` to name speakers.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pandas as pd

from avemotion.datasets.listing import (
    MEDIA_EXTENSIONS,
    MODALITIES,
    IndexResult,
    Listing,
    Problem,
    modality_of_file,
    table_columns,
)
from avemotion.errors import AvemotionError

NAME = "manifest"
FOLDERS = "folders"
REQUIRED = ("path", "label")
# manifest column -> table column
RENAMED = {"label": "emotion", "speaker": "actor_id"}


class ManifestError(AvemotionError, ValueError):
    """A manifest that cannot be read at all; the message names the file and the problem."""


def index_manifest(path: Path) -> IndexResult:
    """Index the rows of a manifest CSV; a row whose file is missing or has no label is reported
    and left out."""
    header, records, problems = _read_rows(path)
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise ManifestError(f"{path}: a manifest needs the columns {list(REQUIRED)}; "
                            f"missing {missing} (it has {header})")
    rows = [row for record in records if (row := _manifest_row(record, path.parent, problems)) is not None]
    return _result(rows, problems, NAME)


def _read_rows(path: Path) -> tuple[list[str], list[dict], list[Problem]]:
    """The header and the rows of a CSV manifest as text; a row with more or fewer fields than the
    header is reported (by its line) and left out rather than read into the wrong columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"{path}: not a readable CSV manifest ({error})") from error
    if not lines:
        raise ManifestError(f"{path}: an empty manifest (no header)")
    header = [name.strip() for name in lines[0]]
    records, problems = [], []
    for number, fields in enumerate(lines[1:], start=2):
        if not any(field.strip() for field in fields):
            continue  # a blank line
        if len(fields) != len(header):
            problems.append(Problem(f"{path}:{number}", "malformed_row",
                                    f"{len(fields)} fields where the header has {len(header)}"))
            continue
        records.append(dict(zip(header, fields)))
    return header, records, problems


def _manifest_row(record: dict, folder: Path, problems: list[Problem]) -> dict | None:
    """One table row from one manifest row, or None (and a problem) when it cannot be used."""
    media = _resolve(record["path"], folder)
    if not record["label"].strip():
        problems.append(Problem(str(media), "missing_label", "the label column is empty"))
        return None
    voice = _resolve(record["audio_path"], folder) if record.get("audio_path", "").strip() else None
    for file in (media, voice):
        if file is not None and not file.is_file():
            problems.append(Problem(str(file), "missing_file", "no such file"))
            return None
        if file is not None and file.suffix.lower() not in MEDIA_EXTENSIONS:
            problems.append(Problem(str(file), "stray_file", "not a media file (its extension is "
                                    f"none of {', '.join(MEDIA_EXTENSIONS)})"))
            return None
    modality = record.get("modality", "").strip() or modality_of_file(media)
    if modality not in MODALITIES:
        problems.append(Problem(str(media), "unknown_code",
                                f"modality {modality!r}; choose one of {', '.join(MODALITIES)}"))
        return None
    extra = {key: value for key, value in record.items() if key not in {"path", "audio_path", "modality"}}
    row = {RENAMED.get(key, key): value.strip() for key, value in extra.items()}
    row.update(dataset=NAME, modality=modality, path=media)
    if voice is not None or modality == "audio":
        row["audio_path"] = str(voice or media)
    return row


def _resolve(text: str, folder: Path) -> Path:
    path = Path(text.strip())
    return path if path.is_absolute() else folder / path


def is_folder_per_label(listing: Listing) -> bool:
    """Whether every media file sits in a subfolder of the root (DIR/<label>/…)."""
    return bool(listing.media) and all(len(path.relative_to(listing.root).parts) > 1
                                      for path in listing.media)


def index_folders(listing: Listing) -> list[dict]:
    """Rows of a folder-per-label corpus: the first folder names the label, a second the speaker."""
    rows = []
    for media in listing.media:
        parts = media.relative_to(listing.root).parts
        if len(parts) < 2:
            listing.problems.append(Problem(str(media), "unparseable_name",
                                            "expected DIR/<label>/[<speaker>/]<file>"))
            continue
        modality = modality_of_file(media)
        row = {"emotion": parts[0], "dataset": FOLDERS, "modality": modality, "path": media}
        if len(parts) > 2:
            row["actor_id"] = parts[1]
        if modality == "audio":
            row["audio_path"] = str(media)
        rows.append(row)
    return _with_clip_names(rows)


def _result(rows: list[dict], problems: list[Problem], dataset: str) -> IndexResult:
    rows = _with_clip_names(rows)
    return IndexResult(pd.DataFrame(rows, columns=table_columns(rows)), problems, dataset)


def _with_clip_names(rows: list[dict]) -> list[dict]:
    """Give each row a unique clip name (its file's stem; with its folder's name where two files
    share a stem, and a number where even that repeats) and the generic columns a manifest may lack."""
    stems = Counter(row["path"].stem for row in rows)
    taken: set[str] = set()
    for row in rows:
        media: Path = row.pop("path")
        name = media.stem if stems[media.stem] == 1 else f"{media.parent.name}__{media.stem}"
        unique, number = name, 1
        while unique in taken:
            number += 1
            unique = f"{name}_{number}"
        taken.add(unique)
        row["clip"] = unique
        row["video_path"] = str(media) if row["modality"] != "audio" else ""
        row.setdefault("actor_id", "")
        row["gender"] = row.get("gender", "") or "unknown"
    return rows
