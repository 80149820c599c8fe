"""ONNX Runtime sessions as avemotion runs them: on the CPU, their threads never spinning between runs.

Judging a clip or a timeline takes turns between sessions (the face's, Whisper's encoder, the
voice's head) and decoding, on the same cores. A session whose threads spin-wait after each run (ONNX
Runtime's default) holds the cores the next one needs: on 2 cores the ready model's timeline of a
64 s video took 21 s with spinning and 14 s without (benchmarks/ready_model.py).
"""

from __future__ import annotations

from pathlib import Path


def cpu_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime session of the file on the CPU, its threads idle between runs; `threads`
    caps its thread pools (None: ONNX Runtime's choice, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=options)
