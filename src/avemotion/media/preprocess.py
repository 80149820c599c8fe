"""Stage 3, preprocess: every indexed clip's inputs (frames and log-Mel, or what the models read),
computed once into an on-disk cache.

The cache lives in ``CACHE/features-<digest>-<inputs>/``, where the digest hashes the feature
settings, so a change of any setting starts a new cache and never reuses stale arrays. Each clip is
one ``.npz`` file named by the clip and by a digest of its source files (their paths, sizes and
modification times), so two corpora whose clips share names never read each other's arrays, and a
changed file is decoded again. Entries are written under a temporary name and renamed into place,
so an interrupted run leaves either a whole entry or none; the next run does only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from avemotion.csvfiles import write_csv
from avemotion.datasets.listing import table_modalities
from avemotion.errors import AvemotionError, MissingFileError
from avemotion.media.features import ClipFeatures, MediaError, extract_features
from avemotion.media.inputs import (
    CLIP_MODALITIES,
    DEFAULT_INPUTS,
    FeatureSettings,
    inputs_present,
    network_inputs,
)

SETTINGS_FILE = "settings.json"
FAILURES_FILE = "failures.csv"
CLIPS_FOLDER = "clips"
TEMPORARY_PREFIX = ".partial-"


@dataclass(frozen=True)
class FeatureCache:
    """The cached inputs of one feature setting: one .npz per clip, random access by entry key
    (:func:`entry_keys`: the clip's name and its source files' digest)."""

    root: Path
    settings: FeatureSettings
    inputs: tuple[str, ...] = DEFAULT_INPUTS  # what every entry holds (empty where a clip lacks it)

    @classmethod
    def open(cls, cache_dir: str | Path, settings: FeatureSettings,
             inputs: tuple[str, ...] = DEFAULT_INPUTS) -> FeatureCache:
        """The cache of these settings and inputs under cache_dir, created (with its settings.json)
        if new."""
        inputs = tuple(sorted(set(inputs)))
        root = cls._root(cache_dir, settings, inputs)
        (root / CLIPS_FOLDER).mkdir(parents=True, exist_ok=True)
        settings_path = root / SETTINGS_FILE
        if not settings_path.exists():
            settings_path.write_text(json.dumps({**asdict(settings), "inputs": inputs}, indent=2) + "\n")
        return cls(root=root, settings=settings, inputs=inputs)

    @property
    def folder(self) -> Path:
        """The folder that holds every cache of every setting (what `--cache` names)."""
        return self.root.parent

    @staticmethod
    def _root(cache_dir: str | Path, settings: FeatureSettings, inputs: tuple[str, ...]) -> Path:
        return Path(cache_dir) / f"features-{settings.digest()}-{'-'.join(inputs)}"

    def with_inputs(self, inputs: tuple[str, ...]) -> FeatureCache:
        """The cache whose entries hold `inputs` (a model's): the one of exactly those where it
        exists, else this one where its entries hold them and more (a model reads only its own:
        an ablation trained after its hybrid decodes nothing again), else a new one beside it."""
        inputs = tuple(sorted(set(inputs)))
        exact = self._root(self.folder, self.settings, inputs)
        if inputs == self.inputs or (set(inputs) < set(self.inputs) and not (exact / SETTINGS_FILE).exists()):
            return self
        return FeatureCache.open(self.folder, self.settings, inputs)

    def path(self, key: str) -> Path:
        """Where an entry lives."""
        return self.root / CLIPS_FOLDER / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether an entry is complete on disk."""
        return self.path(key).is_file()

    def write(self, key: str, features: ClipFeatures) -> None:
        """Store a clip's arrays atomically: a reader sees the whole entry or none."""
        face_found = -1 if features.face_found is None else int(features.face_found)
        write_npz_atomically(self.path(key), **features.inputs, face_found=np.int8(face_found))

    def read(self, key: str, inputs: tuple[str, ...] | None = None) -> ClipFeatures:
        """Load an entry's arrays (no media decoding); only `inputs` (default: all the cache holds)
        are read from disk (an audio model never reads a clip's 1.2 MB of frames)."""
        with np.load(self.path(key)) as entry:
            face_found = int(entry["face_found"])
            arrays = {name: entry[name] for name in (inputs or self.inputs)}
            return ClipFeatures(arrays, face_found=None if face_found < 0 else bool(face_found))

    def remove_partial_entries(self) -> int:
        """Delete entries an interrupted run left half-written; return how many there were."""
        return remove_partial_files(self.root / CLIPS_FOLDER)


def entry_keys(table: pd.DataFrame) -> list[str]:
    """Each row's cache entry name: its clip, and a digest of its files' paths, sizes and
    modification times (a file that cannot be read gets its path's digest; decoding reports it)."""
    return [f"{clip}-{_source_digest(files)}" for clip, files in zip(_clip_names(table), clip_media(table))]


def _clip_names(table: pd.DataFrame) -> pd.Series:
    """Each row's clip name; a table without the column names clips after their video files."""
    return table["clip"] if "clip" in table else table["video_path"].map(lambda p: Path(p).stem)


def _source_digest(files: tuple[str | None, str | None]) -> str:
    hasher = hashlib.sha256()
    for name in files:
        if name is None:
            continue
        path = Path(name).absolute()
        try:
            stat = path.stat()
            hasher.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        except OSError:
            hasher.update(str(path).encode())
    return hasher.hexdigest()[:12]


def write_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to an .npz under a temporary name, then rename it into place."""
    partial = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(partial, path)


def remove_partial_files(folder: Path) -> int:
    """Delete what interrupted atomic writes left in a folder; return how many there were."""
    leftovers = list(folder.glob(f"{TEMPORARY_PREFIX}*"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


@dataclass(frozen=True)
class _Job:
    """One clip to preprocess: what a worker needs, and nothing it has to send back."""

    clip: str
    key: str  # its cache entry
    video_path: str  # the file the job reads first: the video, or the voice of an audio-only clip
    audio_path: str | None  # a separate voice file; None: the video's own track, if it has a voice
    inputs: tuple[str, ...]  # the cache's inputs the clip can give (its modality's)


@dataclass(frozen=True)
class _Outcome:
    clip: str
    video_path: str
    error: str | None = None  # None when the entry was written
    face_found: bool | None = None


@dataclass
class PreprocessReport:
    """What one run did: entries written, entries already cached, clips that failed and why."""

    cache: FeatureCache
    done: int = 0
    cached: int = 0
    failures: list[_Outcome] = field(default_factory=list)
    faces_missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One paragraph for the terminal."""
        rate = self.done / self.seconds if self.seconds else 0.0
        lines = [
            f"cache: {self.cache.root}",
            (f"{self.done} clips preprocessed ({rate:.1f} clips/s), {self.cached} already cached, "
             f"{len(self.failures)} failed"),
        ]
        if self.faces_missing:
            lines.append(f"{len(self.faces_missing)} clips had no detectable face: full frames used")
        if self.failures:
            lines.append(f"failures listed in {self.cache.root / FAILURES_FILE}:")
            lines += [f"  {failure.error}" for failure in self.failures[:5]]
            if len(self.failures) > 5:
                lines.append(f"  … and {len(self.failures) - 5} more")
        return "\n".join(lines)


def preprocess(
    table: pd.DataFrame,
    cache_dir: str | Path,
    settings: FeatureSettings = FeatureSettings(),
    workers: int | None = None,
    progress: bool = True,
    inputs: tuple[str, ...] = DEFAULT_INPUTS,
) -> PreprocessReport:
    """Compute the inputs of every clip of the table not yet cached, on `workers` processes."""
    cache = FeatureCache.open(cache_dir, settings, inputs)
    cache.remove_partial_entries()
    jobs = [job for job in _jobs(table, cache.inputs) if not cache.has(job.key)]
    report = PreprocessReport(cache=cache, cached=len(table) - len(jobs))
    started = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="clip", desc="preprocess", disable=not progress)
    with bar:
        for outcome in _run(jobs, cache, workers or os.cpu_count() or 1):
            _record(report, outcome)
            bar.update()
    report.seconds = time.perf_counter() - started
    _write_failures(report)
    return report


def ensure_cached(table: pd.DataFrame, cache: FeatureCache, progress: bool = True) -> pd.DataFrame:
    """Preprocess the clips the cache lacks; return the table without the clips that failed."""
    if all(map(cache.has, entry_keys(table))):
        return table
    report = preprocess(table, cache.folder, cache.settings, progress=progress, inputs=cache.inputs)
    if report.failures:
        print(report.summary())
    failed = {failure.clip for failure in report.failures}
    return table[~table["clip"].isin(failed)]


def _jobs(table: pd.DataFrame, inputs: tuple[str, ...]) -> list[_Job]:
    """One job per row of a metadata table; a missing audio_path means the clip's own track."""
    return [_Job(str(clip), key, media, voice, inputs_present(inputs, modality))
            for clip, key, (media, voice), modality
            in zip(_clip_names(table), entry_keys(table), clip_media(table), table_modalities(table))]


def clip_media(table: pd.DataFrame) -> list[tuple[str | None, str | None]]:
    """Each row's files: the one read first (its video, or its voice when it has no video), and a
    separate voice file (None: the first file's own track)."""
    audio = table["audio_path"] if "audio_path" in table else pd.Series(None, index=table.index)
    media = []
    for video, voice in zip(table["video_path"], audio):
        video, voice = optional_path(video), optional_path(voice)
        media.append((video or voice, voice if video else None))
    return media


class ModalityError(AvemotionError, ValueError):
    """A model asked to learn from (or be scored on) clips without the input it reads."""


def clips_with_inputs(table: pd.DataFrame, model) -> pd.DataFrame:
    """The clips that have every input the model reads; none is one clear error naming what is
    missing, some is a note of how many were left out."""
    has = table_modalities(table).map(lambda modality: set(CLIP_MODALITIES[modality]))
    needed = set(model.modalities)
    usable = has.map(needed.issubset).to_numpy(bool)
    if not usable.any():
        present = set().union(*has)
        missing = " and ".join(sorted(needed - present)) or " and ".join(sorted(needed))
        instead = ("an audio-only model (such as resnet18_vit_lstm_audio_only)" if "audio" in present
                   else "a video-only model (such as resnet18_vit_lstm_video_only)")
        raise ModalityError(f"{model.name} reads {' and '.join(model.modalities)}, but no clip of this "
                            f"corpus has {missing}: train {instead} on it")
    if not usable.all():
        print(f"{(~usable).sum()} clips left out: they lack an input {model.name} reads")
    return table[usable]


def optional_path(value) -> str | None:
    """A path column's value, or None where the table leaves it empty."""
    return None if pd.isna(value) or str(value) == "" else str(value)


def _run(jobs: list[_Job], cache: FeatureCache, workers: int):
    """Yield each job's outcome as it finishes, in this process or on a pool of workers."""
    if workers <= 1 or len(jobs) <= 1:  # here, leaving the caller's thread settings as they are
        yield from (_process_into(cache, job) for job in jobs)
        return
    # A plain fork would copy FFmpeg's and BLAS's thread pools without their threads and can hang;
    # the fork server forks workers from a clean process that has only imported this module.
    # Each worker writes its own entries, and only a few strings come back.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(workers, initializer=_init_worker, initargs=(cache,)) as pool:
        yield from pool.imap_unordered(_process, jobs, chunksize=2)


_worker_cache: FeatureCache | None = None


def _init_worker(cache: FeatureCache) -> None:
    """Give a worker its cache, and one thread for OpenCV and BLAS: the parallelism is across
    clips, and each worker's BLAS spreading over every core halves the throughput of two workers."""
    global _worker_cache
    _worker_cache = cache
    cv2.setNumThreads(1)
    threadpool_limits(limits=1)


def _process(job: _Job) -> _Outcome:
    """One job on a worker of the pool."""
    return _process_into(_worker_cache, job)


def _process_into(cache: FeatureCache, job: _Job) -> _Outcome:
    """Compute and store one clip's features; any failure becomes a recorded reason, never a crash."""
    try:
        features = extract_features(job.video_path, cache.settings, job.audio_path, job.inputs)
        cache.write(job.key, features.completed(cache.inputs, cache.settings))
    except MediaError as error:
        return _Outcome(job.clip, job.video_path, error=str(error))
    except Exception as error:  # noqa: BLE001 - one bad clip must not stop a run over thousands
        return _Outcome(job.clip, job.video_path, error=f"{job.video_path}: {type(error).__name__}: {error}")
    return _Outcome(job.clip, job.video_path, face_found=features.face_found)


def _record(report: PreprocessReport, outcome: _Outcome) -> None:
    """Count one outcome in the report."""
    if outcome.error is not None:
        report.failures.append(outcome)
        return
    report.done += 1
    if outcome.face_found is False:
        report.faces_missing.append(outcome.clip)


def _write_failures(report: PreprocessReport) -> None:
    """List this run's failed clips (and clips without a face) in failures.csv beside the cache."""
    rows = [(f.clip, f.video_path, f.error) for f in report.failures]
    rows += [(clip, "", "warning: no face found, full frames used") for clip in report.faces_missing]
    table = pd.DataFrame(rows, columns=["clip", "video_path", "reason"])
    write_csv(table, report.cache.root / FAILURES_FILE)


class CachedClips:
    """A map-style dataset over cached clips (usable by torch's DataLoader): each item is the
    mapping of a model's inputs by name, and the label's index.

    Only the inputs a model reads are returned (empty arrays where a clip lacks one), so clips with
    and without video batch together for an audio-only model. `transforms` (input name -> function
    of that array) change inputs as they are read (the training clips' spectrogram masks)."""

    def __init__(self, table: pd.DataFrame, cache: FeatureCache, labels: list[str],
                 inputs: tuple[str, ...] = DEFAULT_INPUTS, transforms: dict | None = None) -> None:
        self.keys = entry_keys(table)
        missing = [clip for clip, key in zip(table["clip"], self.keys) if not cache.has(key)]
        if missing:
            raise MissingFileError(
                f"{len(missing)} clips are not in {cache.root} (first: {missing[0]}); "
                "run `avemotion preprocess` with the same settings first"
            )
        self.targets = [labels.index(emotion) for emotion in table["emotion"]]
        self.cache = cache
        self.inputs = inputs
        self.transforms = transforms or {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], int]:
        arrays = self.cache.read(self.keys[index], self.inputs).inputs
        for name, transform in self.transforms.items():
            arrays[name] = transform(arrays[name].astype(np.float32))
        return network_inputs(arrays), self.targets[index]
