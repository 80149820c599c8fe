"""A run folder's layout: every file that train writes and evaluate, compare and the demo read.

    RUN_DIR/config.json        resolved training, feature and model settings, versions
    RUN_DIR/split.csv          which clip went to train, val or test
    RUN_DIR/history.csv        per-epoch losses, accuracies and seconds; loss_curves.png
    RUN_DIR/model.ckpt         the best weights with everything predict needs
    RUN_DIR/predictions.csv    test clips' true and predicted labels and probabilities
    RUN_DIR/metrics.json       test metrics; confusion_matrix.png
    RUN_DIR/evaluation[-SET]/  predictions, metrics and confusion matrix recomputed by evaluate
    RUN_DIR/fold-K/            one run folder per fold of a cross-validation; cv_summary.json
    RUN_DIR/checkpoints/       Lightning's best.ckpt and last.ckpt (for --resume)
    RUN_DIR/logs/attempt-N/    each (re)start's per-step log
"""

from __future__ import annotations

import json
from pathlib import Path

from avemotion.errors import MissingFileError

EVALUATION_FOLDER = "evaluation"


class RunFolder:
    """The paths of one run folder (or of an evaluation folder, which holds the same results)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    config = property(lambda self: self.root / "config.json")
    split = property(lambda self: self.root / "split.csv")
    history = property(lambda self: self.root / "history.csv")
    loss_curves = property(lambda self: self.root / "loss_curves.png")
    model = property(lambda self: self.root / "model.ckpt")
    predictions = property(lambda self: self.root / "predictions.csv")
    metrics = property(lambda self: self.root / "metrics.json")
    confusion_matrix = property(lambda self: self.root / "confusion_matrix.png")
    cv_summary = property(lambda self: self.root / "cv_summary.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    logs = property(lambda self: self.root / "logs")

    def fold(self, number: int) -> RunFolder:
        """The run folder of fold `number` (1-based) of a cross-validation."""
        return RunFolder(self.root / f"fold-{number}")

    def evaluation(self, metadata: str | Path | None = None) -> RunFolder:
        """Where evaluate writes: on the run's test split, or on every clip of another table."""
        suffix = f"-{Path(metadata).stem}" if metadata is not None else ""
        return RunFolder(self.root / f"{EVALUATION_FOLDER}{suffix}")

    def read_config(self) -> dict:
        """config.json, or a clear error when this is not a run folder."""
        if not self.config.is_file():
            raise MissingFileError(f"{self.root}: not a run folder (no {self.config.name})")
        return json.loads(self.config.read_text())

    def write_json(self, path: Path, content: dict) -> None:
        """One of the folder's JSON files, indented for people to read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text())
