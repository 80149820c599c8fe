"""The demo: the whole pipeline in about two minutes on two cores, one report.

The bundled real CREMA-D clips go through index → eda → preprocess → predict. Six clips of one actor
cannot train anything, so a hybrid and its audio-only and video-only ablations train on a small
SYNTHETIC corpus (drawn faces and generated voices with CREMA-D's names; see :mod:`avemotion.datasets.synth`)
with an actor-independent split, from random weights with frozen backbones; then evaluate and
compare. Given a real dataset folder instead, the same chain runs on it and trains on it.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from avemotion.config import FROZEN_FROM_SCRATCH, DemoSettings
from avemotion.csvfiles import write_csv
from avemotion.datasets import canonical
from avemotion.datasets.eda import run_eda
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.datasets.synth import SynthSettings, write_corpus
from avemotion.media.inputs import FRAMES, FeatureSettings
from avemotion.media.preprocess import FeatureCache, preprocess
from avemotion.reference import CORPORA, PAPER_RESULTS
from avemotion.registry import with_ablations
from avemotion.runtime.predict import Prediction, load
from avemotion.samples import sample_dir
from avemotion.training.compare import compare_runs
from avemotion.training.evaluate import evaluate_run
from avemotion.training.runs import RunFolder
from avemotion.training.train import train

DEMO_REPORT = "index.html"


def run_demo(out_dir: str | Path, data_dir: str | Path | None = None,
             settings: DemoSettings = DemoSettings()) -> Path:
    """Run every stage into out_dir, on data_dir or the bundled clips; return the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips_dir = Path(data_dir) if data_dir is not None else sample_dir()
    print(f"1. index {clips_dir}")
    index = index_dataset(clips_dir)
    write_metadata(index.table, out_dir / "metadata.csv")
    write_csv(index.problems_table(), out_dir / "index_problems.csv")
    print(index.summary())
    print("2. exploratory data analysis")
    eda_report = run_eda(index.table, out_dir / "eda")
    print("3. preprocess")
    report = preprocess(index.table, out_dir / "cache", FeatureSettings(), progress=False)
    print(report.summary())
    print("4. train and evaluate, from random weights (not ImageNet-pretrained)")
    training_table, metadata_path = _training_corpus(out_dir, index.table if data_dir else None, settings)
    cache = preprocess(training_table, out_dir / "cache", FeatureSettings(frame_size=settings.frame_size),
                       progress=False).cache
    trained = train_from_scratch(training_table, cache, out_dir / "runs", with_ablations(settings.family),
                                 settings.seed, metadata_path)
    runs = [run for run, _ in trained]
    for run in runs:
        evaluate_run(run.root, progress=False)
    print("5. compare")
    comparison = compare_runs([run.root for run in runs], out_dir / "comparison")
    print(comparison["table1_md"].read_text())
    print("6. predict the real clips")
    videos = [Path(path) for path in index.table["video_path"]]
    predictions = load(runs[0].model).predict_batch(videos)
    print("7. the ready model on the real clips")
    ready = load()  # no model named: the ready model
    if ready.voice_missing:
        print(f"   faces alone are judged: {ready.voice_missing}")
    ready_predictions = ready.predict_batch(videos)
    page = _demo_page(out_dir, clips_dir, data_dir is None, settings, index.summary(examples=1000),
                      eda_report, report.summary(), trained, comparison, predictions, index.table)
    page = page.replace(READY_PLACE, _ready_section(ready, ready_predictions, index.table))
    (out_dir / DEMO_REPORT).write_text(page)
    return out_dir / DEMO_REPORT


def _training_corpus(out_dir: Path, real_table: pd.DataFrame | None,
                     settings: DemoSettings) -> tuple[pd.DataFrame, Path]:
    """The table the demo trains on: the real dataset's, or a synthetic corpus written now."""
    if real_table is not None:
        return real_table, (out_dir / "metadata.csv").resolve()
    corpus = out_dir / "synthetic-corpus"
    design = SynthSettings(actors=settings.actors, sentences=settings.sentences, seed=settings.seed)
    count = write_corpus(corpus, design, progress=False)
    print(f"   wrote a SYNTHETIC corpus of {count} clips ({settings.actors} actors) to {corpus}")
    table = index_dataset(corpus).table
    metadata_path = (out_dir / "synthetic-metadata.csv").resolve()
    write_metadata(table, metadata_path)
    return table, metadata_path


def train_from_scratch(table: pd.DataFrame, cache: FeatureCache, runs_dir: str | Path, models: list[str],
                       seed: int = 0, metadata_path: str | Path | None = None,
                       ) -> list[tuple[RunFolder, dict]]:
    """Registered models trained from random weights with frozen backbones on an actor-independent
    split (the recipe FROZEN_FROM_SCRATCH), one run folder each; each folder with its test metrics."""
    trained = []
    for name in models:
        run = RunFolder(Path(runs_dir) / name)
        settings = replace(FROZEN_FROM_SCRATCH.with_model(name), seed=seed, progress=False)
        metrics = train(table, cache, run.root, settings,
                        metadata_path=str(metadata_path) if metadata_path else None)
        print(f"   {name:<32} test accuracy {metrics['accuracy']:.3f}", flush=True)
        trained.append((run, metrics))
    return trained


def _link(path: Path, out_dir: Path, text: str | None = None) -> str:
    relative = path.relative_to(out_dir).as_posix()
    return f'<a href="{html.escape(relative)}">{html.escape(text or relative)}</a>'


def _image(path: Path, out_dir: Path, alt: str) -> str:
    return f'<img src="{html.escape(path.relative_to(out_dir).as_posix())}" alt="{html.escape(alt)}">'


def _frame_strip(prediction: Prediction, path: Path) -> Path:
    """The frames the model saw, side by side in one PNG."""
    frames = prediction.features[FRAMES].transpose(0, 2, 3, 1)  # (T, H, W, RGB)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(list(frames), axis=1), cv2.COLOR_RGB2BGR))
    return path


def _prediction_rows(predictions: list[Prediction], table: pd.DataFrame, out_dir: Path) -> str:
    """One table row per clip: its true label, the prediction, the probabilities and the frames."""
    true_labels = dict(zip(table["video_path"].map(str), table["emotion"]))
    rows = []
    for prediction in predictions:
        if not prediction.ok:
            rows.append(f"<tr><td colspan=4>{html.escape(prediction.error)}</td></tr>")
            continue
        probabilities = ", ".join(f"{label} {p:.2f}" for label, p in prediction.probabilities.items())
        strip = _frame_strip(prediction, out_dir / "predictions" / f"{Path(prediction.path).stem}.png")
        rows.append(f"<tr><td>{html.escape(Path(prediction.path).name)}</td>"
                    f"<td>{html.escape(true_labels.get(prediction.path, '?'))}</td>"
                    f"<td><strong>{html.escape(prediction.label)}</strong><br><small>"
                    f"{html.escape(probabilities)}</small></td>"
                    f"<td>{_image(strip, out_dir, 'frames the model saw')}</td></tr>")
    return "\n".join(rows)


READY_PLACE = "<!-- the ready model -->"


def _ready_section(ready, predictions: list[Prediction], table: pd.DataFrame) -> str:
    """The real clips judged by the ready model: its face and its voice apart, then fused."""
    true_labels = dict(zip(table["video_path"].map(str), table["emotion"].map(canonical)))
    missing = (f"<p><strong>Faces alone:</strong> {html.escape(ready.voice_missing)}</p>"
               if ready.voice_missing else "")
    rows = []
    for prediction in predictions:
        name = html.escape(Path(prediction.path).name)
        if not prediction.ok:
            rows.append(f"<tr><td>{name}</td><td colspan=4>{html.escape(prediction.error)}</td></tr>")
            continue
        cells = [_top(prediction.by_modality.get(part)) for part in ("face", "voice")]
        judged = "+".join(prediction.by_modality)
        rows.append(f"<tr><td>{name}</td><td>{html.escape(true_labels.get(prediction.path, '?'))}</td>"
                    + "".join(f"<td>{cell}</td>" for cell in cells)
                    + f"<td><strong>{html.escape(prediction.label)}</strong> <small>({judged})</small></td></tr>")
    correct = sum(p.ok and p.label == true_labels.get(p.path) for p in predictions)
    return (f"<h2>The ready model ({html.escape(ready.card.model_name)}) on the real clips</h2>"
            "<p>Trained on real faces (FER2013) and real voices (CREMA-D's and RAVDESS's), shipped inside "
            "the package: nothing to train (<code>avemotion predict CLIP</code>). A sanity check on six "
            f"clips, not a result: {correct} of {len(predictions)} named. Its figures on whole corpora "
            "are in its model card.</p>" + missing
            + "<table><tr><th>clip</th><th>true</th><th>face</th><th>voice</th><th>fused</th></tr>"
            + "\n".join(rows) + "</table>")


def _top(distribution: dict[str, float] | None) -> str:
    """A part's top label and its probability, or a dash where it did not speak."""
    if not distribution:
        return "–"
    label = max(distribution, key=distribution.get)
    return f"{html.escape(label)} {distribution[label]:.2f}"


def _reference_section() -> str:
    """The figures avemotion's models reached on real corpora, quoted from the benchmarks, beside
    the paper's: what the synthetic training above cannot say."""
    blocks = []
    for corpus in CORPORA:
        rows = "".join(f"<tr><td>{html.escape(result.system)}</td><td>{result.protocol}</td>"
                       f"<td>{result.accuracy:.3f}</td></tr>"
                       for result in corpus.results)
        blocks.append(f"<h3>{html.escape(corpus.name)}</h3><p>{html.escape(corpus.what)}. "
                      f"<code>{html.escape(corpus.command)}</code></p>"
                      f"<table><tr><th>system</th><th>protocol</th><th>accuracy</th></tr>{rows}</table>")
    paper = "; ".join(f"{html.escape(system)} {accuracy:.2f}" for system, accuracy in PAPER_RESULTS)
    return (f"<p>Measured by avemotion's benchmarks on real data (2 cores, no GPU), not by this demo. "
            f"Protocol <em>clip</em>: each clip judged alone; <em>speaker</em>: each speaker's features "
            f"standardised over that speaker's clips (<code>train --speaker-norm</code>). The paper "
            f"reports, on CREMA-D's videos with an unstated split: {paper}.</p>" + "".join(blocks))


def _run_links(run: RunFolder, out_dir: Path) -> str:
    files = (run.config, run.split, run.history, run.model, run.predictions, run.metrics,
             run.evaluation().metrics)
    return (f"<h3>{html.escape(run.root.name)}</h3><p>"
            + " · ".join(_link(path, out_dir, path.relative_to(run.root).as_posix()) for path in files)
            + "</p>" + _image(run.loss_curves, out_dir, "loss curves")
            + _image(run.confusion_matrix, out_dir, "confusion matrix"))


def _headline(trained: list[tuple[RunFolder, dict]]) -> str:
    """Each model's test accuracy in one sentence, against chance."""
    labels = len(trained[0][1]["labels"])
    scores = ", ".join(f"{html.escape(run.root.name)} <strong>{metrics['accuracy']:.2f}</strong>"
                       for run, metrics in trained)
    clips = trained[0][1]["clips"]
    return f"<p>Test accuracy on {clips} clips of held-out actors: {scores} (chance {1 / labels:.2f}).</p>"


def _demo_page(out_dir, clips_dir, bundled, settings, index_summary, eda_report, preprocess_summary,
               trained, comparison, predictions, table) -> str:
    """The demo's front page: every stage's output, linked or shown."""
    runs = [run for run, _ in trained]
    if bundled:
        corpus = (f"a SYNTHETIC corpus of {settings.actors} actors × {settings.sentences} sentences "
                  "(drawn faces and generated voices with CREMA-D's names, in "
                  "<code>synthetic-corpus/</code>)")
        fused, *ablations = [metrics["accuracy"] for _, metrics in trained]
        fusion = ("the fused model beats both of its single-modality ablations, because in this "
                  "corpus neither the face nor the voice alone tells every emotion apart"
                  if fused > max(ablations) else
                  "here the fused model did not beat both of its single-modality ablations")
        claim = ("<p><strong>What this shows:</strong> on held-out synthetic actors, the pipeline "
                 f"learns end to end from random weights (chance is 1/6), and {fusion}. "
                 "<strong>What it does not show:</strong> anything about recognising emotion in real "
                 "people; the real clips below are predicted by this synthetic-trained model only to "
                 "show the stage working.</p>")
    else:
        corpus = f"the clips of <code>{html.escape(str(clips_dir))}</code>"
        claim = ("<p>Backbones are frozen at random weights, not ImageNet-pretrained: a check of the "
                 "pipeline on this data, not the paper's recipe.</p>")
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>avemotion demo</title>
<style>body {{ font-family: sans-serif; max-width: 72em; margin: 2em auto; }}
img {{ max-width: 48%; vertical-align: top; }} td img {{ max-width: 100%; }}
table {{ border-collapse: collapse; }} td {{ border-top: 1px solid #ccc; padding: .3em; }}</style></head>
<body>
<h1>avemotion demo</h1>
<p>Real clips: <code>{html.escape(str(clips_dir))}</code>. Training data: {corpus}.</p>
{READY_PLACE}
<h2>Training your own</h2>
{_headline(trained)}
{claim}
<h2>1. Index</h2>
<p>{_link(out_dir / "metadata.csv", out_dir)} · {_link(out_dir / "index_problems.csv", out_dir)}</p>
<pre>{html.escape(index_summary)}</pre>
<h2>2. Exploratory data analysis</h2>
<p>{_link(eda_report, out_dir, "EDA report")}: value counts, bar and pie charts of statement,
emotion, intensity and gender.</p>
<h2>3. Preprocessing</h2>
<pre>{html.escape(preprocess_summary)}</pre>
<h2>4. Training and evaluation</h2>
<p>{html.escape(settings.family)} and its audio-only and video-only ablations; actor-independent
split (no actor in two of train, validation, test); backbones from random weights (not
ImageNet-pretrained) and frozen, {settings.frame_size}-pixel frames; only the temporal model, fusion
and head train.</p>
{"".join(_run_links(run, out_dir) for run in runs)}
<h2>5. Comparison (the paper's Table 1 and Fig. 3)</h2>
<p>{_link(comparison["table1_csv"], out_dir)} · {_link(comparison["per_class_md"], out_dir)}</p>
<pre>{html.escape(comparison["table1_md"].read_text())}</pre>
{_image(comparison["figure"], out_dir, "training loss of every run")}
<h2>6. Prediction on the real clips</h2>
<p>By {html.escape(runs[0].root.name)}, with the frames it saw.</p>
<table><tr><th>clip</th><th>true</th><th>predicted</th><th>frames</th></tr>
{_prediction_rows(predictions, table, out_dir)}
</table>
<h2>7. Reference results on real data</h2>
{_reference_section()}
</body>
</html>
"""
