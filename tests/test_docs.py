"""The front door: the README a newcomer reads, and the documentation site it points to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avemotion.reference import CORPORA, ReferenceResult
from avemotion.registry import list_models

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FIGURE = re.compile(r"\b0\.\d{3}\b")


def readme_links() -> list[str]:
    return [target for target in LINK.findall(README.read_text()) if "://" not in target]


def test_the_readme_is_short_and_answers_the_first_two_questions():
    """At most 250 lines; the two set-up commands; how to judge a video with the ready model; how
    good it is, corpus by corpus."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "make demo" in text and "make test" in text
    assert "avemotion predict clip.mp4" in text and "avemotion timeline" in text
    assert "## How good is it" in text
    for target in readme_links():
        assert (ROOT / target).exists(), f"README links to {target}, which is not there"


def test_every_figure_of_the_readme_results_table_is_on_the_page_it_links_to():
    """The headline table quotes the results pages: a figure changed on one side alone fails."""
    text = README.read_text()
    table = text.split("## How good is it", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and FIGURE.search(line)]
    assert len(rows) >= 4
    for row in rows:
        page = ROOT / LINK.findall(row)[-1]
        quoted = page.read_text()
        for figure in FIGURE.findall(row):
            assert figure in quoted, f"{figure} of {row.split('|')[1].strip()!r} is not on {page}"


def quotes(row: str, result: ReferenceResult) -> bool:
    """Whether a results table row is this result's: its system, its figure, and its protocol where
    the table has a protocol column."""
    system = result.system.split()[0]  # the model's name, or "eGeMAPS"
    protocols = [cell for cell in ("clip", "speaker") if f"| {cell} |" in row]
    return (system in row and f"{result.accuracy:.3f}" in row
            and protocols in ([], [result.protocol]))


def test_the_reference_results_quote_the_results_pages():
    """The demo's reference figures are the documentation's, corpus by corpus, each on its own
    system's row: neither changes alone."""
    pages = "\n".join(page.read_text() for page in sorted(RESULTS.glob("*.md")))
    rows = [line for line in pages.splitlines() if line.startswith("| ")]
    for corpus in CORPORA:
        assert corpus.command.split()[1] in pages, corpus.command  # the benchmark's script
        for result in corpus.results:
            if result.system.startswith("CREMA-D's own crowd"):  # published, quoted in a sentence
                assert f"crowd recognised {result.accuracy:.3f}" in pages
                continue
            assert any(quotes(row, result) for row in rows), (corpus.name, result)


@pytest.mark.slow
def test_the_documentation_site_builds_strictly_with_every_registered_model(tmp_path):
    """`mkdocs build --strict`: no broken link or anchor, no page left out of the navigation, every
    included file present; the models page's table, made from the registry, names every model."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    models_page = (site / "models" / "index.html").read_text()
    assert all(f"<code>{name}</code>" in models_page for name in list_models())
    assert (site / "model-card" / "index.html").read_text().count("SHA-256") >= 1
