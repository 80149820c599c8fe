"""Stage 5, evaluate: metrics, predictions and pictures of a trained model on an indexed set of clips.

Metrics come from scikit-learn: accuracy, macro precision / recall / F1, the same per class, and the
confusion matrix. Where the dataset ships the crowd's votes, the predictions are also compared with
the crowd's audio-visual majority label.

A model can be scored on another corpus: both corpora's labels are mapped onto the canonical
emotion vocabulary (:mod:`avemotion.datasets.vocabulary`), only the clips of labels both share are
scored, the model's choice is restricted to those labels, and the labels left out are named.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from torch.utils.data import DataLoader

from avemotion.csvfiles import read_csv, write_csv
from avemotion.errors import UsageError
from avemotion.media.inputs import WAVEFORM
from avemotion.media.speech import speed_perturbed
from avemotion.training.runs import RunFolder

SCORES = ("accuracy", "macro_precision", "macro_recall", "macro_f1")  # Table 1's columns


def classification_metrics(true: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, support and the confusion matrix."""
    macro = precision_recall_fscore_support(true, predicted, labels=labels, average="macro",
                                            zero_division=0)
    per_class = precision_recall_fscore_support(true, predicted, labels=labels, zero_division=0)
    return {
        "clips": len(true),
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, *per_class)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(true, predicted, labels=labels).tolist(),
    }


def predictions_table(clips: list[str], true: list[str], probabilities: np.ndarray,
                      labels: list[str]) -> pd.DataFrame:
    """One row per clip: clip, true label, predicted label, and the probability of each label."""
    table = pd.DataFrame({"clip": clips, "true": true,
                          "predicted": [labels[i] for i in probabilities.argmax(axis=1)]})
    for index, label in enumerate(labels):
        table[f"p_{label}"] = probabilities[:, index].round(6)
    return table


def device_of(network: torch.nn.Module) -> torch.device:
    """The device a network's tensors are on (an SVM head on frozen features has buffers only)."""
    return next(itertools.chain(network.parameters(), network.buffers())).device


@torch.no_grad()
def predict_probabilities(network: torch.nn.Module, loader, speeds: tuple[float, ...] = ()) -> np.ndarray:
    """Softmax probabilities of every clip a loader yields (inputs by name, target), in order; with
    `speeds`, each averaged with those of its voice (the waveform input) played at each speed, as
    a model with these test-time speeds predicts."""
    network.eval()
    device = device_of(network)
    outputs = []
    for inputs, _ in loader:
        heard = [inputs] + [{**inputs, WAVEFORM: _played(inputs[WAVEFORM], speed)} for speed in speeds]
        outputs.append(torch.stack([torch.softmax(network(on_device(voices, device)), dim=1).cpu()
                                    for voices in heard]).mean(dim=0))
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0))


@torch.no_grad()
def cached_probabilities(model, table: pd.DataFrame, cache, speeds: tuple[float, ...] = (),
                         progress: bool = True) -> np.ndarray:
    """predict_probabilities for a model whose encoders never change (a frozen speech encoder's),
    from their embeddings in the embedding cache, computed first where missing (with a progress
    bar), at each test-time speed too."""
    from avemotion.media.preprocess import entry_keys
    from avemotion.training.embeddings import EmbeddingCache

    embeddings, keys = EmbeddingCache(cache.folder, model, cache), entry_keys(table)
    model.eval()
    heard = []
    for speed in (1.0, *speeds):
        embeddings.fill(sorted(set(keys)), progress, speed)
        heard.append(torch.softmax(model.forward_embeddings(embeddings.load(keys, speed)), dim=1))
    return torch.stack(heard).mean(dim=0).numpy()


def _played(voices: torch.Tensor, speed: float) -> torch.Tensor:
    """(B, samples) zero-padded voices, each played `speed` times as fast."""
    return torch.from_numpy(speed_perturbed(voices.float().numpy(), speed))


@torch.no_grad()
def clip_features(network: torch.nn.Module, loader) -> np.ndarray:
    """The vector each clip's last layer reads (EmotionNet.clip_features), for every clip a loader
    yields, in order: float32 (N, D)."""
    network.eval()
    device = device_of(network)
    outputs = [network.clip_features(on_device(inputs, device)).float().cpu() for inputs, _ in loader]
    return torch.cat(outputs).numpy()


def on_device(inputs: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """A batch's inputs by name, moved to the network's device."""
    return {name: value.to(device) for name, value in inputs.items()}


def crowd_agreement(predictions: pd.DataFrame, metadata: pd.DataFrame) -> dict | None:
    """How often the model and the actors' intended labels agree with the crowd's audio-visual vote.

    A tied vote ('ANG:DIS') counts as agreement with either label. None without crowd votes.
    """
    if "crowd_av_vote" not in metadata.columns:
        return None
    votes = metadata.set_index("clip")["crowd_av_vote"].reindex(predictions["clip"])
    known = votes.notna().to_numpy() & (votes.astype(str) != "").to_numpy()
    if not known.any():
        return None
    crowd = [set(str(vote).split(":")) for vote in votes[known]]
    model = predictions.loc[known, "predicted"]
    intended = predictions.loc[known, "true"]
    return {
        "clips_with_votes": int(known.sum()),
        "model_agrees_with_crowd": float(np.mean([p in c for p, c in zip(model, crowd)])),
        "intended_label_agrees_with_crowd": float(np.mean([t in c for t, c in zip(intended, crowd)])),
    }


def plot_loss_curves(history: pd.DataFrame, path: Path, title: str = "Loss per epoch") -> None:
    """Training and validation loss against epoch."""
    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    axes = figure.subplots()
    for column, label in (("train_loss", "training"), ("val_loss", "validation")):
        if column in history and history[column].notna().any():
            axes.plot(history["epoch"] + 1, history[column], marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.savefig(path)


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    """The confusion matrix normalised by true label (rows sum to 1), counts in brackets."""
    counts = np.array(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    figure = Figure(figsize=(6, 5.2), dpi=100, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    for (row, column), value in np.ndenumerate(normalised):
        colour = "white" if value > 0.5 else "black"
        axes.text(column, row, f"{value:.2f}\n({int(counts[row, column])})", ha="center",
                  va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (normalised by true label)")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.savefig(path)


def write_evaluation(results: RunFolder, predictions: pd.DataFrame, labels: list[str],
                     metadata: pd.DataFrame | None = None, extra: dict | None = None) -> dict:
    """Write predictions.csv, metrics.json and the confusion matrix PNG; return the metrics."""
    results.root.mkdir(parents=True, exist_ok=True)
    write_csv(predictions, results.predictions)
    metrics = classification_metrics(list(predictions["true"]), list(predictions["predicted"]), labels)
    if metadata is not None and (agreement := crowd_agreement(predictions, metadata)):
        metrics["crowd"] = agreement
    metrics.update(extra or {})
    results.write_json(results.metrics, metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], labels, results.confusion_matrix)
    return metrics


def summarise_folds(fold_metrics: list[dict]) -> dict:
    """Mean and standard deviation over folds of every scalar metric and every per-class F1."""
    summary = {"folds": len(fold_metrics)}
    for name in SCORES:
        values = [m[name] for m in fold_metrics]
        summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    summary["per_class_f1"] = {
        label: {"mean": float(np.mean(v)), "std": float(np.std(v))}
        for label in fold_metrics[0]["per_class"]
        for v in [[m["per_class"][label]["f1"] for m in fold_metrics]]
    }
    return summary


def evaluate_run(run_dir: str | Path, metadata: str | Path | None = None,
                 cache_dir: str | Path | None = None, out_dir: str | Path | None = None,
                 batch_size: int = 8, progress: bool = True,
                 weights: str | Path | None = None) -> tuple[dict, Path]:
    """Recompute a run's metrics from its checkpoint alone: on its test split, or on every clip of
    another metadata table. Returns the metrics and the folder they were written to. `weights`: a
    pretrained speech encoder's local folder (default: the one the run was trained with)."""
    from avemotion.datasets.index import read_metadata, read_metadata_tables
    from avemotion.media.preprocess import CachedClips, FeatureCache, clips_with_inputs, ensure_cached
    from avemotion.runtime.speakers import clip_groups
    from avemotion.training.checkpoint import load_checkpoint
    from avemotion.training.embeddings import clip_features_of_frozen

    run = RunFolder(run_dir)
    config = run.read_config()
    model, info = load_checkpoint(run.model, weights=weights or config.get("train", {}).get("weights"))
    if metadata is None:
        if not config.get("metadata"):
            raise UsageError(f"{run.root}: config.json names no metadata table; pass --metadata")
        table = read_metadata_tables(config["metadata"])  # one table's path, or several tables'
        test_clips = read_csv(run.split).query("split == 'test'")["clip"]
        table = table[table["clip"].isin(set(test_clips))]
        settings = info.feature_settings  # the run's own, so that its metrics are recomputed
    else:
        table = read_metadata(metadata)
        settings = info.reading_settings  # as predict reads another corpus's clips
    results = RunFolder(out_dir) if out_dir else run.evaluation(metadata)
    cache_dir = cache_dir or Path(config["feature_cache"]).parent
    cache = FeatureCache.open(cache_dir, settings, info.inputs)
    table, labels, extra = _shared_label_clips(table, info.labels, own_corpus=metadata is None)
    table = ensure_cached(clips_with_inputs(table, info.model_settings), cache, progress)
    clips = CachedClips(table, cache, info.labels, info.inputs)
    # a frozen speech encoder's embeddings never change: read from (or added to) the embedding
    # cache that training filled, instead of encoding every clip again
    frozen = info.model_settings.frozen_speech
    if info.speaker_norm:  # each speaker's clips (or each corpus's) standardised together
        groups = clip_groups(table, info.normalised_by)  # a table without speakers refused before encoding
        features = (clip_features_of_frozen(model, table, cache, progress) if frozen
                    else clip_features(model, DataLoader(clips, batch_size=batch_size)))
        probabilities = info.speaker_normalisation.probabilities(features, groups, "the evaluated table",
                                                                 info.normalised_by)
    elif frozen:
        probabilities = cached_probabilities(model, table, cache, info.test_time_speeds, progress)
    else:
        probabilities = predict_probabilities(model, DataLoader(clips, batch_size=batch_size),
                                              info.test_time_speeds)
    scored = [info.labels.index(label) for label in labels]
    predictions = predictions_table(list(table["clip"]), [info.labels[t] for t in clips.targets],
                                    _renormalised(probabilities[:, scored]), labels)
    extra.update(model=info.model_settings.name, checkpoint=str(run.model), speaker_norm=info.speaker_norm,
                 normalised_by=info.normalised_by if info.speaker_norm else None)
    metrics = write_evaluation(results, predictions, labels, metadata=table, extra=extra)
    return metrics, results.root


def _shared_label_clips(table: pd.DataFrame, model_labels: list[str],
                        own_corpus: bool = False) -> tuple[pd.DataFrame, list[str], dict]:
    """The clips whose label the model knows (through the canonical vocabulary), relabelled with the
    model's labels; the model labels to score: every one on the model's own test clips, else those
    the table has (a corpus of four emotions is judged choosing among those four); and what was left
    out, for the metrics."""
    from avemotion.datasets import shared_labels

    data_labels = set(table["emotion"].astype(str))
    if own_corpus and data_labels <= set(model_labels):  # the run's own test clips: every label scored
        return table.assign(emotion=table["emotion"].astype(str)), list(model_labels), {}
    mapping, left_out = shared_labels(model_labels, sorted(data_labels))
    if not mapping:
        raise UsageError(f"this table's labels ({', '.join(sorted(data_labels))}) "
                         f"share no emotion with the model's ({', '.join(model_labels)})")
    kept = table[table["emotion"].astype(str).isin(mapping)]
    kept = kept.assign(emotion=kept["emotion"].astype(str).map(mapping))
    labels = [label for label in model_labels if label in set(mapping.values())]
    extra = {}
    if left_out or len(labels) < len(model_labels):
        extra["cross_corpus"] = {
            "scored_labels": labels,
            "data_labels_left_out": left_out,
            "clips_left_out": int(len(table) - len(kept)),
            "model_labels_not_in_data": [label for label in model_labels if label not in labels],
        }
    return kept, labels, extra


def _renormalised(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities restricted to some labels, summing to one again."""
    totals = probabilities.sum(axis=1, keepdims=True)
    return np.divide(probabilities, totals, out=np.full_like(probabilities, 1 / max(1, probabilities.shape[1])),
                     where=totals > 0)
