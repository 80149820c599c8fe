"""Shared fixtures: the bundled real clips, and folders of named (empty) files for name-only stages."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from avemotion.samples import sample_dir


def pytest_configure(config):
    """Under pytest-xdist, one thread per worker (for the CLI subprocesses a test starts too): the
    workers already fill the cores, and on two cores two one-thread trainings side by side finish
    sooner than the same two one after the other on two threads each."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The files with a heavy test first, then the others by their number of tests, most first.
    pytest-xdist hands out whole files in this order: a minute-long file handed out last would leave
    one worker running it alone at the end."""
    tests_per_file = Counter(item.path for item in items)
    heavy_files = {item.path for item in items if item.get_closest_marker("heavy")}
    items.sort(key=lambda item: (item.path not in heavy_files, -tests_per_file[item.path]))


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
    from avemotion.datasets.index import index_dataset

    return index_dataset(samples).table


@pytest.fixture
def four_actor_metadata(tmp_path):
    """24 real clips: the six samples under four actors' names (two male, two female), indexed."""
    import shutil

    from avemotion.datasets.index import index_dataset, write_metadata
    from avemotion.samples import sample_videos

    folder = tmp_path / "clips"
    folder.mkdir()
    for actor, gender in [(1001, "01"), (1002, "02"), (1003, "01"), (1004, "02")]:
        for source in sample_videos():
            shutil.copy(source, folder / f"{actor}_DFA_{source.stem.split('_')[2]}_XX_{gender}.flv")
    metadata = tmp_path / "metadata.csv"
    write_metadata(index_dataset(folder).table, metadata)
    return metadata


TEST_IMAGE_SIZE = 64  # small frames keep model tests fast on two cores


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory, sample_table):
    """The bundled clips preprocessed at the tests' small frame size."""
    from avemotion.media.features import FeatureSettings
    from avemotion.media.preprocess import preprocess

    settings = FeatureSettings(frame_size=TEST_IMAGE_SIZE)
    report = preprocess(sample_table, tmp_path_factory.mktemp("cache"), settings, workers=1,
                        progress=False)
    assert not report.failures
    return report.cache


@pytest.fixture(scope="session")
def sample_batch(sample_cache, sample_table):
    """The six real clips as one model batch: the inputs by name (uint8 frames, dB mel), and the
    emotion targets."""
    from torch.utils.data import default_collate

    from avemotion.datasets.cremad import EMOTIONS
    from avemotion.media.preprocess import CachedClips

    dataset = CachedClips(sample_table, sample_cache, list(EMOTIONS))
    return tuple(default_collate([dataset[i] for i in range(len(dataset))]))


def calibrated_checkpoint(name: str, path: Path, sample_batch, features, **overrides) -> Path:
    """A checkpoint of a registered model whose BatchNorm statistics are calibrated on the real clips.

    A randomly initialised EfficientNet in eval mode, with the default running statistics, maps
    every input to nearly the same features; calibrated statistics make its outputs differ per
    clip, so comparisons of its predictions are not trivially equal.
    """
    import torch

    from avemotion.datasets.cremad import EMOTIONS
    from avemotion.training.checkpoint import Checkpoint, save_checkpoint
    from avemotion.training.models import create_model

    inputs, _ = sample_batch
    torch.manual_seed(0)
    model = create_model(name, pretrained=False, image_size=features.frame_size)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics become the calibration batch's
    model.train()
    with torch.no_grad():
        model(inputs)
    save_checkpoint(path, model.eval(), Checkpoint.of(model, features, EMOTIONS, **overrides))
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, sample_batch, sample_cache):
    """An effnet_lstm checkpoint calibrated on the real clips, at the tests' frame size."""
    return calibrated_checkpoint("effnet_lstm", tmp_path_factory.mktemp("model") / "model.ckpt",
                                 sample_batch, sample_cache.settings)


def check_predict_export_and_timeline(checkpoint: Path, folder: Path):
    """A trained checkpoint end to end: it predicts the bundled clips (probabilities summing to 1),
    its ONNX export alone gives the same probabilities, and both make the same timeline of a long
    video. Returns the checkpoint's classifier and the export's, for checks of the caller's own."""
    import numpy as np

    from avemotion.datasets.cremad import EMOTIONS
    from avemotion.datasets.synth import concatenate_clips
    from avemotion.runtime.predict import load
    from avemotion.samples import sample_videos
    from avemotion.training.export import export_onnx

    def table(results):
        assert all(result.ok for result in results)
        return np.array([[result.probabilities[label] for label in EMOTIONS] for result in results])

    classifier = load(checkpoint)
    probabilities = table(classifier.predict_batch(sample_videos()))
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    exported = load(export_onnx(checkpoint, folder / "model.onnx"))
    assert np.abs(table(exported.predict_batch(sample_videos())) - probabilities).max() < 1e-4
    # each timeline window is judged as predict judges that stretch, exported as from the checkpoint
    long_video = folder / "long.mp4"
    concatenate_clips(sample_videos()[:3], long_video, seconds=6)
    timeline = classifier.timeline(long_video, window=2.0, hop=1.0)
    assert len(timeline) >= 4 and np.allclose(timeline[list(EMOTIONS)].sum(axis=1), 1, atol=1e-5)
    onnx_timeline = exported.timeline(long_video, window=2.0, hop=1.0)
    assert np.abs(onnx_timeline[list(EMOTIONS)].to_numpy() - timeline[list(EMOTIONS)].to_numpy()).max() < 1e-3
    return classifier, exported
