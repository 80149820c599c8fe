"""The face tool people install, `fer` (PyPI, MIT), on already-cropped faces: run by benchmarks/faces.py
in `fer`'s own environment, since it needs TensorFlow (and facenet-pytorch pins an older PyTorch):

    python -m venv fer-env && fer-env/bin/pip install fer
    fer-env/bin/python benchmarks/fer_peer.py FACES.json OUT.json [--keras]

FACES.json is a list of image paths. Each face is prepared as `fer.FER.detect_emotions` prepares the
face it finds (grayscale, resized to the model's input, scaled to [-1, 1]) and judged by the model a
`FER()` loads: its quantised TensorFlow Lite model by default, the Keras model with --keras. Writes
each face's seven scores (in fer's label order), the labels, the model file's size and the CPU
seconds per face (one thread, the median of each face's time).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--keras", action="store_true", help="fer's Keras model instead of its TFLite one")
    args = parser.parse_args()
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    import cv2
    import numpy as np
    from fer.fer import FER  # fer 25.10 no longer re-exports it from the package

    detector = FER(use_tflite=not args.keras)
    size = detector._FER__emotion_target_size  # the model's own input size (64 x 64)
    scores, seconds = [], []
    for path in json.loads(args.faces.read_text()):
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        face = cv2.resize(gray, size).astype("float32")[None]
        started = time.process_time()
        scores.append(np.asarray(detector._classify_emotions((face / 255.0 - 0.5) * 2.0))[0].tolist())
        seconds.append(time.process_time() - started)
    model = "emotion_model.hdf5" if args.keras else "emotion_model_quantized.tflite"
    import fer

    args.out.write_text(json.dumps({
        "labels": [FER._get_labels()[index] for index in range(7)], "scores": scores,
        "model": f"fer {getattr(fer, '__version__', '?')} {model}",
        "bytes": (Path(fer.__file__).parent / "data" / model).stat().st_size,
        "seconds_per_face": float(np.median(seconds))}))


if __name__ == "__main__":
    main()
