"""Reference results: what avemotion's models scored on real data, measured by the benchmarks.

The demo trains on a synthetic corpus, so its own figures say nothing about real people; these are
the figures its models reached on real voices and faces, each with the benchmark that measured it
(2 cores, no GPU; the documentation's results pages, docs/results/).
They are quoted, not recomputed: the corpora are not shipped with avemotion.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceResult:
    system: str
    protocol: str  # clip: each clip judged alone; speaker: features standardised per speaker
    accuracy: float


@dataclass(frozen=True)
class Corpus:
    name: str
    what: str  # what was judged, and on which split
    command: str  # the benchmark that measured it
    results: tuple[ReferenceResult, ...]


EGEMAPS = "eGeMAPS + SVM (hand-crafted baseline)"
WHISPER_SVM = "whisper_base_audio_only (frozen, SVM probe)"
RESNET_FROM_SCRATCH = "resnet18_vit_lstm_audio_only (from scratch)"
WHISPER_LAYERS_SVM = "whisper_base_layers_audio_only (frozen, every layer, SVM probe)"
WHISPER_LAYERS_AT_SPEEDS = ("whisper_base_layers_audio_only (the same, fitted and judged also at 0.9 and 1.1 "
                            "times the voice's speed: --speed-perturbation and --test-time-speeds 0.9 1.1)")

CORPORA = (
    Corpus("CREMA-D voices",
           "7,441 voices of 91 actors, six emotions; the audio branch alone, not the paper's "
           "audio-visual system (no CREMA-D video beyond six clips was reachable); actor-independent "
           "5-fold (mean over folds)",
           "python benchmarks/cremad_voices.py CREMAD_DIR --documents ../shared/cremad-metadata "
           "--weights WHISPER_BASE_DIR",
           (ReferenceResult("CREMA-D's own crowd, voice alone (Cao et al. 2014)", "clip", 0.409),
            ReferenceResult(EGEMAPS, "clip", 0.516),
            ReferenceResult(RESNET_FROM_SCRATCH, "clip", 0.571),
            ReferenceResult("whisper_base_linear_audio_only (frozen, linear probe)", "clip", 0.636),
            ReferenceResult(WHISPER_SVM, "clip", 0.692),
            ReferenceResult(WHISPER_LAYERS_SVM, "clip", 0.745),
            ReferenceResult(WHISPER_LAYERS_AT_SPEEDS, "clip", 0.756),
            ReferenceResult(EGEMAPS, "speaker", 0.611),
            ReferenceResult(WHISPER_SVM, "speaker", 0.750),
            ReferenceResult(WHISPER_LAYERS_SVM, "speaker", 0.826))),
    Corpus("RAVDESS speech",
           "1,440 voices of 24 actors, eight emotions; speaker-independent 6-fold (mean over folds)",
           "python benchmarks/real_speech.py RAVDESS_DIR --weights WHISPER_BASE_DIR",
           (ReferenceResult(EGEMAPS, "clip", 0.478),
            ReferenceResult(RESNET_FROM_SCRATCH, "clip", 0.543),
            ReferenceResult("effnet_lstm_audio_only (from scratch, its own recipe)", "clip", 0.488),
            ReferenceResult(WHISPER_SVM, "clip", 0.707),
            ReferenceResult(WHISPER_LAYERS_SVM, "clip", 0.752),
            ReferenceResult(WHISPER_LAYERS_AT_SPEEDS, "clip", 0.773),
            ReferenceResult(WHISPER_SVM, "speaker", 0.783),
            ReferenceResult(WHISPER_LAYERS_SVM, "speaker", 0.848))),
    Corpus("FER2013 faces",
           "35,887 face images, seven expressions; trained on Training, scored on PrivateTest",
           "python benchmarks/faces.py FER2013_DIR",
           (ReferenceResult("resnet18_face (from scratch, 64 px)", "clip", 0.666),
            ReferenceResult("mobilenetv2_face (from ImageNet, 96 and 112 px averaged: the ready model's face)",
                            "clip", 0.712))),
)

# What the paper reports for its audio-visual hybrids on CREMA-D (its split unstated), for comparison.
PAPER_RESULTS = (("Hybrid 1: ResNet-18 + ViT + LSTM, audio-visual", 0.79),
                 ("Hybrid 2: EfficientNet-B0 + LSTM, audio-visual", 0.82))
