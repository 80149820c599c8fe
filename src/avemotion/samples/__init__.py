"""Real CREMA-D clips that ship with avemotion (see ATTRIBUTION.md beside this file)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
CREMAD_SAMPLE_DIR = SAMPLES_DIR / "cremad"


def sample_dir() -> Path:
    """The folder of bundled clips, laid out like the original CREMA-D release."""
    return CREMAD_SAMPLE_DIR


def sample_videos() -> list[Path]:
    """The six audio-video clips of actor 1001, one per emotion, sorted by name."""
    return sorted((CREMAD_SAMPLE_DIR / "VideoFlash").glob("*.flv"))


def sample_audio() -> list[Path]:
    """The six audio-only clips of actor 1002, sorted by name."""
    return sorted((CREMAD_SAMPLE_DIR / "AudioMP3").glob("*.mp3"))
