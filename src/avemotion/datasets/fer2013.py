"""FER2013, the facial expression corpus of the ICML 2013 challenge: 35,887 grayscale faces of 48×48
pixels, each labelled with one of seven expressions.

Its images keep the challenge's part in their names, ``<Part>_<number>.jpg``: ``Training`` (28,709),
``PublicTest`` (3,589, the validation part) and ``PrivateTest`` (3,589, the test part); each sits in
a folder named by its label (``angry``, ``disgust``, ``fear``, ``happy``, ``neutral``, ``sad``,
``surprise``), under any part folder (``train/angry/Training_10118481.jpg``). The part becomes the
table's ``split`` column (train, val, test), which ``--split given`` keeps. FER2013 names no
subjects. Augmented copies some redistributions add (``Training_10118481.jpg3.jpg``) are not
FER2013: they are reported and left out.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from avemotion.datasets.listing import Listing, Problem, media_preference

NAME = "fer2013"
# The challenge's labels, in its own words -> canonical names, the table's labels.
EMOTION_NAMES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                 "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
LABELS = tuple(sorted(EMOTION_NAMES.values()))
# The challenge's parts -> the split each is used as.
PARTS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
NAME_HINT = "<label folder>/<Training|PublicTest|PrivateTest>_<number>.jpg"

_IMAGE_NAME = re.compile(r"^(Training|PublicTest|PrivateTest)_(\d+)$")
_AUGMENTED_COPY = re.compile(r"^(Training|PublicTest|PrivateTest)_\d+\.\w+\d+$")


def recognises(stem: str) -> bool:
    """Whether a file name (without extension) is one of FER2013's image names."""
    return _IMAGE_NAME.match(stem) is not None


def index_listing(listing: Listing) -> list[dict]:
    """One row per image: its label from its folder, its part from its name. A few different
    images share a name under two labels (two in the Training part): each is a row, the clip
    named ``<label>__<name>``."""
    chosen: dict[tuple[str, str], Path] = {}  # (label folder, name) -> image
    for path in sorted(listing.media, key=media_preference):
        problem = _problem(path, chosen)
        if problem is None:
            chosen[(path.parent.name.lower(), path.stem)] = path
        else:
            listing.problems.append(problem)
    shared = Counter(stem for _, stem in chosen)
    rows = [_row(path, f"{label}__{stem}" if shared[stem] > 1 else stem)
            for (label, stem), path in chosen.items()]
    return sorted(rows, key=lambda row: row["clip"])


def _row(path: Path, clip: str) -> dict:
    part = _IMAGE_NAME.match(path.stem).group(1)
    return {"clip": clip, "dataset": NAME, "modality": "image", "video_path": str(path),
            "actor_id": "", "gender": "unknown", "emotion": EMOTION_NAMES[path.parent.name.lower()],
            "part": part, "split": PARTS[part]}


def _problem(path: Path, chosen: dict[tuple[str, str], Path]) -> Problem | None:
    """Why an image cannot be one of the corpus's rows, or None."""
    if _AUGMENTED_COPY.match(path.stem):
        return Problem(str(path), "augmented_copy", "a copy made by augmentation, not a FER2013 image")
    if not recognises(path.stem):
        return Problem(str(path), "unparseable_name", f"expected {NAME_HINT}")
    label = path.parent.name.lower()
    if label not in EMOTION_NAMES:
        return Problem(str(path), "unknown_code", f"label folder {path.parent.name!r}; expected one "
                       f"of {', '.join(EMOTION_NAMES)}")
    if (label, path.stem) in chosen:
        return Problem(str(path), "duplicate", f"{path.stem} already indexed as {chosen[(label, path.stem)]}")
    return None
