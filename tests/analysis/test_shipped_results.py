"""The shipped full-scale results (docs/results/fc-mnist-full/) are what the code makes of them: the
report's tables regenerate from the shipped table, and the package's reference is that table."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ticketlab.cli import main

pytest.importorskip("matplotlib")

SHIPPED = Path(__file__).parents[2] / "docs" / "results" / "fc-mnist-full"
TABLE = SHIPPED / "results.csv.gz"
needs_results = pytest.mark.skipif(not TABLE.is_file(), reason="no full-scale results shipped yet")


def _tables(markdown: str) -> str:
    return markdown[markdown.index("## Results by experiment"):]


@needs_results
def test_the_shipped_report_regenerates_from_the_shipped_table(tmp_path):
    assert main(["report", str(TABLE), "--out", str(tmp_path)]) == 0
    assert _tables((tmp_path / "report.md").read_text()) == _tables((SHIPPED / "report.md").read_text())


@needs_results
def test_the_packaged_reference_is_the_shipped_table():
    from ticketlab.analysis.compare import packaged_reference

    assert packaged_reference() is not None
    assert gzip.decompress(packaged_reference().read_bytes()) == gzip.decompress(TABLE.read_bytes())
