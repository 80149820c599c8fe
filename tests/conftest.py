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


TEST_IMAGE_SIZE = 64  # small frames keep model tests fast on two cores


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory, sample_table):
    """The bundled clips preprocessed at the tests' small frame size."""
    from avemotion.features import FeatureSettings
    from avemotion.preprocess import preprocess

    settings = FeatureSettings(frame_size=TEST_IMAGE_SIZE)
    report = preprocess(sample_table, tmp_path_factory.mktemp("cache"), settings, workers=1,
                        progress=False)
    assert not report.failures
    return report.cache


@pytest.fixture(scope="session")
def sample_batch(sample_cache, sample_table):
    """The six real clips as one model batch: uint8 frames, dB mel, emotion targets."""
    import numpy as np
    import torch

    from avemotion.cremad import EMOTIONS
    from avemotion.preprocess import CachedClips

    items = [CachedClips(sample_table, sample_cache, list(EMOTIONS))[i] for i in range(6)]
    frames = torch.from_numpy(np.stack([item[0] for item in items]))
    mel = torch.from_numpy(np.stack([item[1] for item in items]))
    targets = torch.tensor([item[2] for item in items])
    return frames, mel, targets
