"""Compare runs: the paper's Table 1 (accuracy, macro P/R/F1 per model), per-class F1, and its
Fig. 3 (the training loss of every run on one plot)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from avemotion.errors import MissingFileError
from avemotion.training.evaluate import SCORES
from avemotion.training.runs import RunFolder

TEMPORAL_NAMES = {"lstm": "LSTM", "attention": "attention pooling"}
FUSION_NAMES = {"concat": "", "gated": ", gated fusion"}


def architecture(model: dict) -> str:
    """A model's architecture in words, from its saved settings."""
    parts = []
    if model.get("audio_backbone"):
        parts.append(f"{model['audio_backbone']} (audio)")
    if model.get("video_backbone"):
        temporal = model.get("temporal", "lstm")
        parts.append(f"{model['video_backbone']} (video) + {TEMPORAL_NAMES.get(temporal, temporal)}")
    fusion = model.get("fusion", "concat")
    return " + ".join(parts) + FUSION_NAMES.get(fusion, f", {fusion} fusion")


def _run_row(run: RunFolder) -> tuple[dict, dict]:
    """A run's Table 1 row and its per-class F1 (means over folds for a cross-validated run)."""
    settings = run.read_config()["train"]
    model = settings["model"]
    row = {"run": run.root.name, "model": model["name"], "architecture": architecture(model),
           "split": settings["split"], "pretrained": model["pretrained"]}
    if run.cv_summary.is_file():
        summary = run.read_json(run.cv_summary)
        row.update({score: summary[score]["mean"] for score in SCORES})
        return row, {label: v["mean"] for label, v in summary["per_class_f1"].items()}
    metrics = run.read_json(run.metrics)
    row.update({score: metrics[score] for score in SCORES})
    return row, {label: v["f1"] for label, v in metrics["per_class"].items()}


def training_loss_figure(runs: list[RunFolder], path: Path) -> None:
    """Every run's training loss per epoch (solid) and validation loss (dashed) on one plot."""
    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots()
    for index, run in enumerate(runs):
        if not run.history.is_file():
            continue
        history = pd.read_csv(run.history)
        colour = f"C{index}"
        axes.plot(history["epoch"] + 1, history["train_loss"], marker="o", color=colour,
                  label=f"{run.root.name} training")
        axes.plot(history["epoch"] + 1, history["val_loss"], linestyle="--", color=colour,
                  label=f"{run.root.name} validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title("Training loss per epoch")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path)


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write table1.{csv,md}, per_class_f1.{csv,md} and training_loss.png; return their paths."""
    runs = [RunFolder(run_dir) for run_dir in run_dirs]
    missing = [str(run.root) for run in runs if not run.config.is_file()]
    if missing:
        raise MissingFileError(f"not a run folder (no {runs[0].config.name}): {', '.join(missing)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, per_class = zip(*(_run_row(run) for run in runs))
    table = pd.DataFrame(rows).round(4)
    f1 = pd.DataFrame(per_class, index=[row["run"] for row in rows]).round(4)
    f1.index.name = "run"
    outputs = {"table1_csv": out_dir / "table1.csv", "table1_md": out_dir / "table1.md",
               "per_class_csv": out_dir / "per_class_f1.csv", "per_class_md": out_dir / "per_class_f1.md",
               "figure": out_dir / "training_loss.png"}
    table.to_csv(outputs["table1_csv"], index=False)
    outputs["table1_md"].write_text(table.to_markdown(index=False) + "\n")
    f1.to_csv(outputs["per_class_csv"])
    outputs["per_class_md"].write_text(f1.to_markdown() + "\n")
    training_loss_figure(runs, outputs["figure"])
    return outputs
