"""benchmarks.report: which table of a result file the README embeds."""
from benchmarks import report

RESULT = """# A probe file

Command: `python -m benchmarks.probes --name x run_a run_b`

| run | valid |
|---|---|
| run_a | 0.1 |
| run_b | 0.2 |

Per variant:

| variant | mean |
|---|---|
| a | 0.15 |

Machine: test machine.
"""


def test_embedded_takes_the_first_or_the_last_table(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.md").write_text(RESULT)
    monkeypatch.setattr(report, "HERE", tmp_path)
    first = report.embedded("x", "Title")
    assert "| run_a | 0.1 |" in first and "| a | 0.15 |" not in first
    last = report.embedded("x", "Title", last=True)
    assert "| a | 0.15 |" in last and "| run_a | 0.1 |" not in last
    assert last[-1] == "Machine: test machine." and "python -m benchmarks.probes --name x run_a run_b" in last[1]
    assert report.embedded("missing", "Title") == []
