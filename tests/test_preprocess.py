from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.cli import main
from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.media.features import FeatureSettings
from avemotion.media.preprocess import FAILURES_FILE, CachedClips, entry_keys, preprocess

from media import write_clip
from test_features import bad_media

SMALL = FeatureSettings(frame_size=32)


def test_preprocess_bundled_clips_on_two_workers_then_reuse(tmp_path, sample_table):
    first = preprocess(sample_table, tmp_path, SMALL, workers=2, progress=False)
    assert (first.done, first.cached, first.failures) == (6, 0, [])
    cache = first.cache
    keys = entry_keys(sample_table)
    stamps = {key: cache.path(key).stat().st_mtime_ns for key in keys}
    second = preprocess(sample_table, tmp_path, SMALL, workers=2, progress=False)
    assert (second.done, second.cached) == (0, 6)
    assert "6 already cached" in second.summary()
    assert stamps == {key: cache.path(key).stat().st_mtime_ns for key in keys}
    dataset = CachedClips(sample_table, cache, list(EMOTIONS))
    inputs, target = dataset[3]
    frames, mel = inputs["frames"], inputs["mel"]
    assert frames.shape == (8, 3, 32, 32) and frames.dtype == np.uint8
    assert mel.shape == (1, 64, 128) and mel.dtype == np.float32
    assert EMOTIONS[target] == sample_table["emotion"].iloc[3]


def test_changed_settings_never_reuse_stale_arrays(tmp_path, sample_table):
    table = sample_table.head(2)
    small = preprocess(table, tmp_path, SMALL, workers=1, progress=False)
    other = preprocess(table, tmp_path, FeatureSettings(frame_size=48), workers=1, progress=False)
    assert small.cache.root != other.cache.root
    assert other.done == 2 and other.cached == 0
    assert other.cache.read(entry_keys(table)[0])["frames"].shape == (8, 3, 48, 48)
    assert '"frame_size": 48' in (other.cache.root / "settings.json").read_text()


def test_bad_clips_are_recorded_and_do_not_stop_the_others(tmp_path, sample_table):
    (tmp_path / "bad").mkdir()
    bad = bad_media(tmp_path / "bad")
    rows = [{"clip": f"bad_{i}", "video_path": str(path), "emotion": "ANG"} for i, path in enumerate(bad)]
    table = pd.concat([sample_table, pd.DataFrame(rows)], ignore_index=True)
    report = preprocess(table, tmp_path / "cache", SMALL, workers=2, progress=False)
    assert report.done == 6 and len(report.failures) == len(bad)
    failures = pd.read_csv(report.cache.root / FAILURES_FILE)
    for path, words in bad.items():
        reason = failures.loc[failures["video_path"] == str(path), "reason"].item()
        assert words in reason
    assert all(map(report.cache.has, entry_keys(sample_table)))


def test_cli_exit_status_says_whether_any_clip_failed(tmp_path, samples, capsys):
    metadata = tmp_path / "metadata.csv"
    table = index_dataset(samples).table
    write_metadata(table, metadata)
    args = ["preprocess", str(metadata), "--cache", str(tmp_path / "cache"), "--frame-size", "32"]
    assert main(args + ["--workers", "1"]) == 0
    broken = table.copy()
    broken.loc[0, "clip"] = "1001_DFA_XXX_XX"
    broken.loc[0, "video_path"] = str(tmp_path / "gone.flv")
    write_metadata(broken, metadata)
    assert main(args) == 1
    output = capsys.readouterr().out
    assert "1 failed" in output and "gone.flv" in output and "5 already cached" in output


def test_a_crash_while_writing_leaves_no_entry_that_reads_as_good(tmp_path, sample_table, monkeypatch):
    real_savez = np.savez

    def savez_then_crash(handle, **arrays):
        real_savez(handle, **arrays)
        handle.truncate(1000)  # half an entry reached the disk
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_crash)
    crashed = preprocess(sample_table.head(1), tmp_path, SMALL, workers=1, progress=False)
    assert crashed.done == 0 and "disk full" in crashed.failures[0].error
    assert not crashed.cache.has(entry_keys(sample_table.head(1))[0])
    monkeypatch.setattr(np, "savez", real_savez)
    resumed = preprocess(sample_table.head(1), tmp_path, SMALL, workers=1, progress=False)
    assert resumed.done == 1
    assert not list((resumed.cache.root / "clips").glob(".partial-*"))


def finished_entries(clips_folder):
    """Whole cache entries; a run in progress also has its `.partial-*` file there."""
    return [path for path in clips_folder.glob("*.npz") if not path.name.startswith(".")]


# `avemotion preprocess`, killed (SIGKILL, no clean-up) as it starts writing its fourth entry.
KILLED_ON_FOURTH_ENTRY = """
import os, signal, sys
from avemotion.cli import main
from avemotion.media.preprocess import FeatureCache
whole_entries = []
write = FeatureCache.write
def write_unless_fourth(self, clip, features):
    if len(whole_entries) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, clip, features)
    whole_entries.append(clip)
FeatureCache.write = write_unless_fourth
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumes_without_corrupt_entries(tmp_path, four_actor_metadata):
    cache_dir = tmp_path / "cache"
    command = [sys.executable, "-c", KILLED_ON_FOURTH_ENTRY, "preprocess", str(four_actor_metadata),
               "--cache", str(cache_dir), "--frame-size", "32", "--workers", "1"]
    completed = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert completed.returncode == -signal.SIGKILL
    clips = cache_dir / f"features-{SMALL.digest()}-frames-mel" / "clips"
    finished_before = len(finished_entries(clips))
    assert finished_before == 3
    (clips / ".partial-999-2005_DFA_ANG_XX.npz").write_bytes(b"half an entry")
    table = pd.read_csv(four_actor_metadata)
    report = preprocess(table, cache_dir, SMALL, workers=2, progress=False)
    assert report.cached == finished_before and report.done == 24 - finished_before
    assert not report.failures
    assert not list(clips.glob(".partial-*"))
    for key in entry_keys(table):
        assert report.cache.read(key)["frames"].shape == (8, 3, 32, 32)


def test_two_corpora_with_same_named_files_never_share_entries(tmp_path):
    """`a01.wav` in two corpora indexed into one cache: each clip gets its own file's arrays."""
    rows = []
    for corpus, tone in (("first", 220.0), ("second", 880.0)):
        (tmp_path / corpus).mkdir()
        clip = write_clip(tmp_path / corpus / "a01.mp4", frames=12, level=40 if corpus == "first" else 200,
                          tone_hz=tone)
        rows.append({"clip": "a01", "video_path": str(clip), "emotion": "ANG", "dataset": corpus})
    table = pd.DataFrame(rows)
    report = preprocess(table, tmp_path / "cache", SMALL, workers=1, progress=False)
    assert report.done == 2 and report.cached == 0
    first, second = (report.cache.read(key) for key in entry_keys(table))
    assert abs(int(first["frames"].mean()) - int(second["frames"].mean())) > 50
    assert not np.array_equal(first["mel"], second["mel"])
    dataset = CachedClips(table, report.cache, ["ANG"])
    assert np.array_equal(dataset[1][0]["frames"], second["frames"])
    # a changed file is decoded again rather than read from its old entry
    write_clip(Path(rows[0]["video_path"]), frames=12, level=200, tone_hz=880.0)
    again = preprocess(table, tmp_path / "cache", SMALL, workers=1, progress=False)
    assert (again.done, again.cached) == (1, 1)


def test_a_model_reads_its_inputs_from_a_cache_that_holds_more_unless_its_own_exists(tmp_path, sample_table):
    from avemotion.media.preprocess import FeatureCache, ensure_cached

    both = preprocess(sample_table, tmp_path, SMALL, workers=1, progress=False).cache
    assert both.inputs == ("frames", "mel")
    voice = both.with_inputs(("mel",))
    assert voice == both  # an audio-only ablation after its hybrid: nothing decoded again
    assert ensure_cached(sample_table, voice, progress=False) is sample_table
    assert voice.read(entry_keys(sample_table)[0], ("mel",)).inputs.keys() == {"mel"}
    frames_alone = FeatureCache.open(tmp_path, SMALL, ("frames",))  # made earlier by a video model
    assert both.with_inputs(("frames",)) == frames_alone
    assert both.with_inputs(("waveform",)).inputs == ("waveform",)  # not held: its own cache
    assert len(list(tmp_path.glob("features-*"))) == 3
