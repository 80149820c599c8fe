"""CSV files that a spreadsheet may open, written so that none of their text runs as a formula.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a
spreadsheet (``=cmd|' /C calc'!A0``); clip names, labels and paths come from files and manifests
other people made, so every such text cell is written with a leading apostrophe, which a
spreadsheet shows as text, and read back without it. Numbers are written as they are.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV (no index), its text cells made safe for a spreadsheet."""
    escaped(table).to_csv(path, index=False)


def to_csv_text(table: pd.DataFrame) -> str:
    """The same as CSV text."""
    return escaped(table).to_csv(index=False)


def read_csv(path: str | Path, **options) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv`, its text cells as they were."""
    return unescaped(pd.read_csv(path, **options))


def escaped(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text cell that a spreadsheet would run given a leading apostrophe."""
    table = table.copy()
    for column in _text_columns(table):
        table[column] = table[column].map(_escape)
    return table


def unescaped(table: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`escaped`."""
    for column in _text_columns(table):
        table[column] = table[column].map(_unescape)
    return table


def _text_columns(table: pd.DataFrame) -> list:
    return [column for column in table.columns
            if pd.api.types.is_object_dtype(table[column]) or pd.api.types.is_string_dtype(table[column])]


def _escape(value):
    if isinstance(value, str) and (value.startswith(FORMULA_STARTS) or _is_escaped(value)):
        return QUOTE + value
    return value


def _unescape(value):
    return value[1:] if isinstance(value, str) and _is_escaped(value) else value


def _is_escaped(value: str) -> bool:
    """An apostrophe before a formula start (or before another such apostrophe): what _escape wrote."""
    return value.startswith(QUOTE) and (value[1:].startswith(FORMULA_STARTS) or _is_escaped(value[1:]))
