"""The corpora avemotion reads, one module each: its names, its label vocabulary, its metadata
(CREMA-D and RAVDESS clips, FER2013 face images, the voices of TESS, URDU, ASED and TurEV-DB).

A corpus is recognised from its file names (the one whose name pattern most media files match), or
from its layout (a folder per label) when no corpus's names match; ``--dataset NAME`` forces one. A
CSV manifest describes any other corpus row by row. Beside the readers: the index that turns a
corpus into its clip table (:mod:`~avemotion.datasets.index`), the splits, the exploratory
analysis and the synthetic corpus. No torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from avemotion.datasets import ased, cremad, fer2013, manifest, ravdess, tess, turevdb, urdu
from avemotion.datasets.listing import Listing
from avemotion.datasets.vocabulary import CANONICAL_EMOTIONS, canonical, shared_labels
from avemotion.errors import UsageError

__all__ = ["CANONICAL_EMOTIONS", "CORPORA", "Corpus", "canonical", "corpus", "corpus_labels",
           "recognise", "shared_labels"]


@dataclass(frozen=True)
class Corpus:
    """What the index needs from a corpus's module."""

    name: str
    labels: tuple[str, ...] | None  # its label vocabulary in the model's order; None: from the data
    recognises: Callable[[str], bool]  # whether a file name (no extension) is one of its clip names
    index_listing: Callable[[Listing], list[dict]]  # the table's rows from a walked folder


CORPORA = {
    cremad.NAME: Corpus(cremad.NAME, cremad.LABELS, cremad.recognises, cremad.index_listing),
    ravdess.NAME: Corpus(ravdess.NAME, ravdess.LABELS, ravdess.recognises, ravdess.index_listing),
    fer2013.NAME: Corpus(fer2013.NAME, fer2013.LABELS, fer2013.recognises, fer2013.index_listing),
    **{module.NAME: Corpus(module.NAME, module.LABELS, module.recognises, module.index_listing)
       for module in (tess, urdu, ased, turevdb)},  # voices alone
    manifest.FOLDERS: Corpus(manifest.FOLDERS, None, lambda stem: False, manifest.index_folders),
}


def corpus(name: str) -> Corpus:
    """The corpus of a name (the CLI's --dataset)."""
    if name not in CORPORA:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(CORPORA)} "
                         "(or index a CSV manifest)")
    return CORPORA[name]


def recognise(listing: Listing) -> Corpus:
    """The corpus whose clip names most of the folder's media files have; a folder per label when
    none matches and every file sits in a subfolder; else CREMA-D, whose report then lists the
    names it could not read."""
    matches = {name: sum(c.recognises(path.stem) for path in listing.media) for name, c in CORPORA.items()}
    best = max(matches, key=matches.get)
    if matches[best]:
        return CORPORA[best]
    if manifest.is_folder_per_label(listing):
        return CORPORA[manifest.FOLDERS]
    return CORPORA[cremad.NAME]


def corpus_labels(table) -> list[str]:
    """The labels a model trained on this table predicts: its corpus's vocabulary, in the corpus's
    order, when the table is one known corpus and holds only its labels; else the labels present,
    sorted."""
    present = sorted(set(table["emotion"].astype(str)))
    names = set(table["dataset"].dropna()) if "dataset" in table else {cremad.NAME}
    known = CORPORA.get(names.pop()) if len(names) == 1 else None
    if known is not None and known.labels and set(present) <= set(known.labels):
        return list(known.labels)
    return present
