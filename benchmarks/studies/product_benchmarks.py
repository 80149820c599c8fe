"""Puts benchmarks/ on the import path: a study builds on the product benchmarks' corpora, folds and
training (cremad_voices, real_speech), and is run as `python benchmarks/studies/STUDY.py …`."""

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[1])
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
