"""Shared fixtures: the bundled real clips, and folders of named (empty) files for name-only stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from avemotion.samples import sample_dir

SHARED_METADATA = Path(__file__).resolve().parents[1].parent / "shared" / "cremad-metadata"


@pytest.fixture(scope="session")
def samples() -> Path:
    """The bundled CREMA-D sample folder (original layout)."""
    return sample_dir()


def make_tree(root: Path, relative_paths: list[str], content: bytes = b"") -> Path:
    """Create the given files under root (contents do not matter to name-only stages)."""
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def write_demographics(path: Path, rows: list[tuple[int, int, str]]) -> None:
    """Write a VideoDemographics.csv in the release's format from (actor, age, sex) rows."""
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f'{actor},{age},"{sex}","Caucasian","Not Hispanic"' for actor, age, sex in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def sample_table(samples):
    """The metadata table of the bundled clips."""
    from avemotion.index import index_dataset

    return index_dataset(samples).table
