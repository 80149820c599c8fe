"""Stage 1, index: walk a folder of clips (or read a manifest) and build the metadata table, reading
names only.

The walk and the problem report are generic; what a corpus's names mean belongs to its module in
:mod:`avemotion.datasets` (CREMA-D, RAVDESS, a folder per label, a CSV manifest), which is
recognised from the names themselves unless one is named. Every defect found on the way is recorded
as a :class:`Problem`; none stops the walk.

Every table has the columns ``clip`` (a unique name), ``dataset``, ``modality`` (``audio-video``,
``audio``, ``video`` or ``image``, a still image: what the clip has), ``video_path`` (empty without
video; an image's file), ``actor_id`` (the speaker), ``gender`` and ``emotion`` (the corpus's own
label), then whatever the corpus adds; an ``audio_path`` is the voice's own file where it is not
the video's track.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from avemotion import datasets
from avemotion.csvfiles import read_csv, write_csv
from avemotion.datasets.listing import (
    AUDIO_EXTENSIONS,
    DOCUMENT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MEDIA_EXTENSIONS,
    MODALITIES,
    PROBLEM_KINDS,
    REQUIRED_COLUMNS,
    STRICT_KINDS,
    VIDEO_EXTENSIONS,
    IndexResult,
    Listing,
    Problem,
    is_video,
    media_preference,
    table_columns,
    table_modalities,
)
from avemotion.errors import MissingFileError, UsageError

__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "MODALITIES", "PROBLEM_KINDS", "STRICT_KINDS",
           "VIDEO_EXTENSIONS", "IndexResult", "Listing", "Problem", "index_dataset", "is_video", "list_folder",
           "media_preference", "read_metadata", "table_columns", "table_modalities", "write_metadata"]

def index_dataset(source: str | Path, dataset: str | None = None,
                  documents: str | Path | None = None) -> IndexResult:
    """Index a folder of clips, or a manifest CSV; `dataset` names the corpus instead of recognising
    it from the file names (see :mod:`avemotion.datasets`); `documents` is a folder of the corpus's
    own metadata files (CREMA-D's demographics and crowd votes) where they do not sit beside its
    media."""
    source = Path(source).resolve()
    if source.is_file():
        if dataset is not None or documents is not None:
            raise UsageError(f"{source}: a manifest names its own files and labels; --dataset and "
                             "--documents are for folders")
        return datasets.manifest.index_manifest(source)
    if not source.is_dir():
        raise MissingFileError(f"{source}: no such folder")
    listing = list_folder(source)
    if documents is not None:
        listing.documents += _documents_in(Path(documents))
    corpus = datasets.corpus(dataset) if dataset else datasets.recognise(listing)
    rows = corpus.index_listing(listing)
    table = pd.DataFrame(rows, columns=table_columns(rows))
    return IndexResult(table=table, problems=listing.problems, dataset=corpus.name)


def _documents_in(folder: Path) -> list[Path]:
    """The dataset documents directly inside a folder given for them."""
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder of dataset documents")
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix.lower() in DOCUMENT_EXTENSIONS)


def list_folder(root: Path) -> Listing:
    """Walk root once and sort every file into media, documents or stray files. Symbolic links to
    folders are followed (a corpus is often assembled from links), each real folder once, so a
    link cycle ends; a link to nothing is reported, never taken for a clip."""
    listing = Listing(root)
    visited: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        listing.problems.append(Problem(str(error.filename), "unreadable", error.strerror or str(error)))

    for folder, subfolders, files in os.walk(root, onerror=unreadable, followlinks=True):
        identity = _folder_identity(Path(folder))
        if identity in visited:  # reached again through a link: its files are listed already
            subfolders[:] = []
            listing.problems.append(Problem(folder, "link_cycle", "a folder reached twice through links"))
            continue
        visited.add(identity)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if not path.exists():
                listing.problems.append(Problem(str(path), "broken_link", "a link to a file that does not exist"))
            elif suffix in MEDIA_EXTENSIONS:
                listing.media.append(path)
            elif suffix in DOCUMENT_EXTENSIONS:
                listing.documents.append(path)
            else:
                listing.problems.append(Problem(str(path), "stray_file", "not a clip or a dataset document"))
    return listing


def _folder_identity(folder: Path) -> tuple[int, int]:
    """What makes two paths the same folder: its device and inode."""
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def write_metadata(table: pd.DataFrame, path: str | Path) -> None:
    """Save the metadata table as CSV, or as Parquet when the name ends in .parquet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        write_csv(table, path)


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Load a metadata table written by `avemotion index` and check its required columns."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such metadata file (make one with `avemotion index`)")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else read_csv(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise UsageError(f"{path}: not an avemotion metadata table, missing columns {missing}")
    return table.astype({"clip": str, "emotion": str})


def read_metadata_tables(paths: list[str | Path] | str | Path) -> pd.DataFrame:
    """One or several metadata tables as one: each clip keeps its corpus (the `dataset` column, the
    file's name where a table has none), and where the tables hold several corpora each speaker
    becomes ``<corpus>:<speaker>``, so that two corpora's speaker 1 are two speakers, and every
    label its canonical name (CREMA-D's ANG and TESS's angry are both anger). Clip names must not
    repeat across tables (runs name their clips)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    tables = [_with_corpus(read_metadata(path), Path(path)) for path in paths]
    combined = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    repeated = sorted(set(combined.loc[combined["clip"].duplicated(), "clip"]))
    if len(tables) > 1 and repeated:
        raise UsageError(f"{len(repeated)} clip names are in more than one of the tables "
                         f"({', '.join(repeated[:3])}…); each clip must have one name")
    if combined["dataset"].nunique() > 1:  # labels meet in the canonical vocabulary ('ANG' -> 'anger')
        named = combined["actor_id"].astype(str).replace("nan", "")
        combined["actor_id"] = (combined["dataset"].astype(str) + ":" + named).where(named != "", "")
        combined["emotion"] = combined["emotion"].map(datasets.canonical)
    return combined


def _with_corpus(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The table with its corpus named on every row (its file's name where a row names none)."""
    corpus = table["dataset"] if "dataset" in table else pd.Series("", index=table.index)
    return table.assign(dataset=corpus.fillna("").astype(str).replace("", path.stem))


def label_coverage(table: pd.DataFrame) -> dict[str, list[str]]:
    """Each label, with the corpora whose clips carry it."""
    pairs = table[["emotion", "dataset"]].drop_duplicates()
    return {label: sorted(group["dataset"]) for label, group in pairs.groupby("emotion")}


def common_labels_only(table: pd.DataFrame) -> pd.DataFrame:
    """The clips whose label every corpus of the table has."""
    corpora = set(table["dataset"])
    common = [label for label, having in label_coverage(table).items() if set(having) == corpora]
    return table[table["emotion"].isin(common)]
