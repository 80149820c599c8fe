"""MkDocs hook: the models page's table is made from the registry at build time, so it cannot drift
from the code (the same rows `avemotion models` prints)."""

from __future__ import annotations

MARKER = "<!-- registered models -->"


def markdown_table() -> str:
    from avemotion.training.models import MODEL_TABLE_COLUMNS, model_table

    def cells(row) -> str:
        name, *rest = row
        return "| " + " | ".join([f"`{name}`", *(cell.replace("|", "\\|") for cell in rest)]) + " |"

    lines = ["| " + " | ".join(MODEL_TABLE_COLUMNS) + " |", "|" + "---|" * len(MODEL_TABLE_COLUMNS)]
    return "\n".join(lines + [cells(row) for row in model_table()])


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace(MARKER, markdown_table()) if MARKER in markdown else markdown
