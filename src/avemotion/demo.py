"""The demo: the pipeline run end to end on a folder of clips (the bundled samples by default)."""

from __future__ import annotations

import html
from pathlib import Path

from avemotion.eda import run_eda
from avemotion.index import index_dataset, write_metadata
from avemotion.samples import sample_dir

DEMO_REPORT = "index.html"


def run_demo(out_dir: str | Path, data_dir: str | Path | None = None) -> Path:
    """Index and explore data_dir (the bundled clips when None) into out_dir; return the report path."""
    out_dir = Path(out_dir)
    data_dir = Path(data_dir) if data_dir is not None else sample_dir()
    result = index_dataset(data_dir)
    metadata_path = out_dir / "metadata.csv"
    write_metadata(result.table, metadata_path)
    result.problems_table().to_csv(out_dir / "index_problems.csv", index=False)
    print(result.summary())
    eda_report = run_eda(result.table, out_dir / "eda")
    report = out_dir / DEMO_REPORT
    report.write_text(_demo_page(data_dir, result.summary(examples=1000), eda_report, out_dir))
    return report


def _demo_page(data_dir: Path, index_summary: str, eda_report: Path, out_dir: Path) -> str:
    """The demo's front page, linking every output."""
    eda_link = eda_report.relative_to(out_dir).as_posix()
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>avemotion demo</title>
<style>body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; }}</style></head>
<body>
<h1>avemotion demo</h1>
<p>Data: <code>{html.escape(str(data_dir))}</code></p>
<h2>1. Index</h2>
<p><a href="metadata.csv">metadata.csv</a> · <a href="index_problems.csv">index_problems.csv</a></p>
<pre>{html.escape(index_summary)}</pre>
<h2>2. Exploratory data analysis</h2>
<p><a href="{eda_link}">EDA report</a>: value counts, bar and pie charts of statement, emotion,
intensity and gender.</p>
</body>
</html>
"""
