"""Stage 2, eda: value counts, bar and pie charts of the metadata table, gathered in one HTML report
(with each emotion's count in each part where a corpus gives its own split, as FER2013 does)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from avemotion.datasets import canonical, cremad, ravdess
from avemotion.datasets.index import MODALITIES

# The columns always explored where a table has them, each with the order its values are shown in
# (values outside it follow, sorted).
EDA_COLUMNS = {
    "statement": cremad.STATEMENTS,
    "emotion": cremad.EMOTIONS,
    "intensity": cremad.INTENSITIES,
    "gender": cremad.GENDERS,
    "vocal_channel": tuple(ravdess.VOCAL_CHANNELS.values()),
    "modality": MODALITIES,
}
# Any other column is explored when it has a few distinct values, except these, which identify
# clips and files or are free text.
NOT_EXPLORED = ("clip", "actor_id", "dataset", "video_path", "audio_path", "age")
MAX_EXPLORED_VALUES = 20
CHART_DPI = 100
REPORT_NAME = "report.html"


def value_counts(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Count and percentage of each value of a column, in the dataset's order (unseen values left out)."""
    counts = table[column].astype(str).value_counts()
    known = [value for value in EDA_COLUMNS.get(column, ()) if value in counts.index]
    order = known + sorted(set(counts.index) - set(known))
    counts = counts.reindex(order)
    return pd.DataFrame(
        {
            "value": order,
            "count": counts.to_numpy(),
            "percent": (100 * counts / counts.sum()).round(2).to_numpy(),
        }
    )


def explored_columns(table: pd.DataFrame) -> list[str]:
    """The columns the report shows: the known ones the table has, then any other column with a
    few distinct values (one value tells nothing, and neither do hundreds)."""
    known = [column for column in EDA_COLUMNS if column in table]
    others = [column for column in table.columns
              if column not in EDA_COLUMNS and column not in NOT_EXPLORED
              and not column.startswith("crowd_")
              and 1 < table[column].nunique() <= MAX_EXPLORED_VALUES]
    return known + others


def _label(column: str, value: str) -> str:
    """Chart label of a value: emotion codes get their name beside them."""
    name = canonical(value)
    return f"{value} ({name})" if column == "emotion" and name != value.lower() else value


def bar_chart(counts: pd.DataFrame, column: str, path: Path) -> None:
    """Save a bar chart of clip counts per value, with the count above each bar."""
    figure = Figure(figsize=(max(5.0, 0.7 * len(counts) + 2), 4), dpi=CHART_DPI, layout="constrained")
    axes = figure.subplots()
    labels = [_label(column, value) for value in counts["value"]]
    bars = axes.bar(labels, counts["count"], color="tab:blue")
    axes.bar_label(bars, fmt="{:,.0f}", fontsize=8)
    axes.set_title(f"Clips per {column}")
    axes.set_xlabel(column)
    axes.set_ylabel("clips")
    axes.tick_params(axis="x", labelrotation=45 if len(counts) > 6 else 0)
    figure.savefig(path)


def pie_chart(counts: pd.DataFrame, column: str, path: Path) -> None:
    """Save a pie chart of the share of clips per value, with percentages on the slices."""
    figure = Figure(figsize=(5.5, 5.5), dpi=CHART_DPI, layout="constrained")
    axes = figure.subplots()
    labels = [_label(column, value) for value in counts["value"]]
    axes.pie(counts["count"], labels=labels, autopct="%1.1f%%", startangle=90, counterclock=False,
             textprops={"fontsize": 8})
    axes.set_title(f"Share of clips per {column}")
    figure.savefig(path)


def run_eda(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write counts, charts, summary.json and the HTML report for the table; return the report path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"clips": len(table), "actors": int(table["actor_id"].nunique()), "columns": {}}
    sections = []
    for column in explored_columns(table):
        counts = value_counts(table, column)
        counts.to_csv(out_dir / f"{column}_counts.csv", index=False)
        bar_chart(counts, column, out_dir / f"{column}_bar.png")
        pie_chart(counts, column, out_dir / f"{column}_pie.png")
        summary["columns"][column] = dict(zip(counts["value"], counts["count"].astype(int).tolist()))
        sections.append(_html_section(column, counts))
    if "split" in table:  # a corpus with its own parts (FER2013's): the labels of each
        by_split = labels_by_split(table)
        by_split.to_csv(out_dir / "emotion_by_split_counts.csv")
        grouped_bar_chart(by_split, out_dir / "emotion_by_split_bar.png")
        summary["emotion_by_split"] = {split: by_split[split].astype(int).to_dict() for split in by_split.columns}
        sections.append(_html_split_section(by_split))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = out_dir / REPORT_NAME
    report.write_text(_html_page(summary, sections))
    return report


def labels_by_split(table: pd.DataFrame) -> pd.DataFrame:
    """Clips of each emotion (rows, in the dataset's order) in each part of the table's own split
    (columns: train, val, test first)."""
    counts = pd.crosstab(table["emotion"].astype(str), table["split"].astype(str))
    emotions = value_counts(table, "emotion")["value"]
    parts = [part for part in ("train", "val", "test") if part in counts.columns]
    return counts.reindex(index=list(emotions), columns=parts + sorted(set(counts.columns) - set(parts)))


def grouped_bar_chart(counts: pd.DataFrame, path: Path) -> None:
    """Save a bar chart of clips per emotion, one bar per part of the split."""
    figure = Figure(figsize=(max(6.0, 0.9 * len(counts) + 2), 4), dpi=CHART_DPI, layout="constrained")
    axes = figure.subplots()
    width = 0.8 / len(counts.columns)
    for offset, part in enumerate(counts.columns):
        positions = [index + offset * width for index in range(len(counts))]
        axes.bar(positions, counts[part], width=width, label=part)
    axes.set_xticks([index + width * (len(counts.columns) - 1) / 2 for index in range(len(counts))],
                    [_label("emotion", value) for value in counts.index])
    axes.set_title("Clips per emotion in each part of the split")
    axes.set_ylabel("clips")
    axes.legend()
    figure.savefig(path)


def _html_split_section(counts: pd.DataFrame) -> str:
    table = counts.to_html(border=0, classes="counts")
    return f"""
<section>
  <h2>emotion by split</h2>
  <p>The table's own split: {', '.join(html.escape(str(part)) for part in counts.columns)}</p>
  {table}
  <p><a href="emotion_by_split_counts.csv">emotion_by_split_counts.csv</a></p>
  <img src="emotion_by_split_bar.png" alt="bar chart of clips per emotion in each part">
</section>"""


def _html_section(column: str, counts: pd.DataFrame) -> str:
    """The report's part for one column: unique values, count table, both charts."""
    values = ", ".join(html.escape(str(value)) for value in counts["value"])
    table = counts.to_html(index=False, border=0, classes="counts")
    return f"""
<section>
  <h2>{column}</h2>
  <p>{len(counts)} unique values: {values}</p>
  {table}
  <p><a href="{column}_counts.csv">{column}_counts.csv</a></p>
  <img src="{column}_bar.png" alt="bar chart of clips per {column}">
  <img src="{column}_pie.png" alt="pie chart of the share of clips per {column}">
</section>"""


def _html_page(summary: dict, sections: list[str]) -> str:
    """The whole report page."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>avemotion — exploratory data analysis</title>
<style>
  body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; color: #222; }}
  table.counts {{ border-collapse: collapse; margin: 0.5em 0; }}
  table.counts td, table.counts th {{ padding: 0.2em 0.8em; text-align: right; }}
  table.counts tr:nth-child(even) {{ background: #f2f2f2; }}
  img {{ max-width: 48%; vertical-align: top; }}
</style>
</head>
<body>
<h1>Exploratory data analysis</h1>
<p><strong>{summary['clips']:,}</strong> clips of <strong>{summary['actors']:,}</strong> actors.</p>
{''.join(sections)}
</body>
</html>
"""
