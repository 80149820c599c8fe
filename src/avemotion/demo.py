"""The demo: the whole pipeline on a folder of clips (the bundled samples by default), one report.

index → eda → preprocess → a short training of each hybrid from random weights → evaluate →
compare. On the six bundled clips this shows every stage working on real media in a few minutes; its
scores are those of a 6-clip smoke run, not a measurement. On a real CREMA-D folder the same chain
runs with the actor-independent split.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

from avemotion.compare import compare_runs
from avemotion.eda import run_eda
from avemotion.evaluate import (
    CONFIG_FILE,
    CONFUSION_FILE,
    EVALUATION_FOLDER,
    HISTORY_FILE,
    LOSS_CURVES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    SPLIT_FILE,
    evaluate_run,
)
from avemotion.features import FeatureSettings
from avemotion.index import index_dataset, write_metadata
from avemotion.preprocess import preprocess
from avemotion.samples import sample_dir
from avemotion.train import TrainSettings, train

DEMO_REPORT = "index.html"
DEMO_MODELS = ("resnet18_vit_lstm", "effnet_lstm")


def run_demo(out_dir: str | Path, data_dir: str | Path | None = None, epochs: int = 3,
             frame_size: int = 224) -> Path:
    """Run every stage on data_dir (the bundled clips when None) into out_dir; return the report."""
    out_dir = Path(out_dir)
    bundled = data_dir is None
    data_dir = sample_dir() if bundled else Path(data_dir)
    index = index_dataset(data_dir)
    metadata_path = out_dir / "metadata.csv"
    write_metadata(index.table, metadata_path)
    index.problems_table().to_csv(out_dir / "index_problems.csv", index=False)
    print(index.summary())
    eda_report = run_eda(index.table, out_dir / "eda")
    report = preprocess(index.table, out_dir / "cache", FeatureSettings(frame_size=frame_size))
    print(report.summary())
    table = index.table[index.table["clip"].map(report.cache.has)]
    # Six clips of one actor cannot be split by actor; a real dataset gets the honest split.
    settings = TrainSettings(max_epochs=epochs, pretrained=False,
                             split="random" if table["actor_id"].nunique() < 3 else "actor")
    print("training from random weights (--no-pretrained): backbones are not ImageNet-pretrained")
    runs = []
    for model in DEMO_MODELS:
        run_dir = out_dir / "runs" / model
        train(table, report.cache, run_dir, replace(settings, model=model),
              metadata_path=str(metadata_path.resolve()))
        evaluate_run(run_dir, progress=False)
        runs.append(run_dir)
    comparison = compare_runs(runs, out_dir / "comparison")
    page = _demo_page(data_dir, bundled, index.summary(examples=1000), eda_report, report.summary(),
                      runs, comparison, settings, out_dir)
    (out_dir / DEMO_REPORT).write_text(page)
    return out_dir / DEMO_REPORT


def _link(path: Path, out_dir: Path, text: str | None = None) -> str:
    relative = path.relative_to(out_dir).as_posix()
    return f'<a href="{html.escape(relative)}">{html.escape(text or relative)}</a>'


def _image(path: Path, out_dir: Path, alt: str) -> str:
    return f'<img src="{html.escape(path.relative_to(out_dir).as_posix())}" alt="{html.escape(alt)}">'


def _demo_page(data_dir, bundled, index_summary, eda_report, preprocess_summary, runs, comparison,
               settings, out_dir) -> str:
    """The demo's front page: every stage's output, linked or shown."""
    caveat = ("<p><strong>These are the six bundled clips of one actor: a smoke run showing every "
              "stage working on real media. Its scores are not a measurement.</strong></p>"
              if bundled else "")
    run_sections = "".join(
        f"<h3>{html.escape(run.name)}</h3><p>"
        + " · ".join(_link(run / name, out_dir, name) for name in
                     (CONFIG_FILE, SPLIT_FILE, HISTORY_FILE, MODEL_FILE, PREDICTIONS_FILE,
                      METRICS_FILE, f"{EVALUATION_FOLDER}/{METRICS_FILE}"))
        + "</p>" + _image(run / LOSS_CURVES_FILE, out_dir, "loss curves")
        + _image(run / CONFUSION_FILE, out_dir, "confusion matrix")
        for run in runs
    )
    table1 = comparison["table1_md"].read_text()
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>avemotion demo</title>
<style>body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; }}
img {{ max-width: 48%; vertical-align: top; }}</style></head>
<body>
<h1>avemotion demo</h1>
<p>Data: <code>{html.escape(str(data_dir))}</code></p>
{caveat}
<h2>1. Index</h2>
<p>{_link(out_dir / "metadata.csv", out_dir)} · {_link(out_dir / "index_problems.csv", out_dir)}</p>
<pre>{html.escape(index_summary)}</pre>
<h2>2. Exploratory data analysis</h2>
<p>{_link(eda_report, out_dir, "EDA report")}: value counts, bar and pie charts of statement,
emotion, intensity and gender.</p>
<h2>3. Preprocessing</h2>
<pre>{html.escape(preprocess_summary)}</pre>
<h2>4. Training and evaluation</h2>
<p>Split: {settings.split}; at most {settings.max_epochs} epochs; backbones from random weights
(not ImageNet-pretrained).</p>
{run_sections}
<h2>5. Comparison (the paper's Table 1 and Fig. 3)</h2>
<p>{_link(comparison["table1_csv"], out_dir)} · {_link(comparison["per_class_md"], out_dir)}</p>
<pre>{html.escape(table1)}</pre>
{_image(comparison["figure"], out_dir, "training loss of every run")}
</body>
</html>
"""
