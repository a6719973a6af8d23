"""The documentation site: generated results pages up to date, no machine paths, every public
object on an API page, the docstring markup rewritten, and (with the ``docs`` extra) a strict build
with the API pages it promises."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: A path on the machines the benchmarks ran on (the pages must show none).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp)/")


def _rst_markup():
    spec = importlib.util.spec_from_file_location("rst_markup", DOCS / "_ext" / "rst_markup.py")
    if spec is None or spec.loader is None:
        raise AssertionError("docs/_ext/rst_markup.py not loadable")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:  # griffe comes with the docs extra
        pytest.skip(f"the docs extra is not installed ({exc.name} missing)")
    return module


def test_results_pages_are_what_the_generator_writes():
    pages = report.docs_pages()
    folder = DOCS / "results"
    stale = [p for p in sorted(folder.rglob("*.md")) if p.relative_to(folder).as_posix() not in pages]
    assert not stale, f"result pages no result file backs (python -m benchmarks.report --docs docs/results): {stale}"
    for name, text in pages.items():
        path = folder / name
        assert path.is_file(), f"{path} missing: run python -m benchmarks.report --docs docs/results"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is not what the generator writes from benchmarks/results: "
            "run python -m benchmarks.report --docs docs/results")
    # One page per result file, each linked from the listing.
    result_files = sorted(p.name for p in (ROOT / "benchmarks" / "results").glob("*.md"))
    assert sorted(n[len("files/"):] for n in pages if n.startswith("files/")) == result_files
    assert all(f"(files/{name})" in pages["all.md"] for name in result_files)


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    folder = tmp_path / "results"
    assert report.main(["--docs", str(folder)]) == 0
    assert report.main(["--docs", str(folder), "--check"]) == 0
    (folder / "speed.md").write_text("edited by hand\n", encoding="utf-8")
    (folder / "files" / "gone.md").write_text("a result file since removed\n", encoding="utf-8")
    assert report.main(["--docs", str(folder), "--check"]) == 1
    err = capsys.readouterr().err
    assert "speed.md: out of date" in err and "gone.md: out of date" in err
    assert report.main(["--docs", str(folder)]) == 0  # rewrites the page, removes the stale one
    assert not (folder / "files" / "gone.md").exists()
    assert (folder / "speed.md").read_text(encoding="utf-8") == report.docs_pages()["speed.md"]


def test_relativise_strips_the_hosts_folders():
    command = ("python -m benchmarks.reproduce --data-root /work/shared/data --set knn_cache_dir=/work/exp/knn_cache "
               "--runs /tmp/runs --out /home/someone/exp, /root/x and /work/main/benchmarks/runs/a/grid_0")
    assert report.relativise(command) == (
        "python -m benchmarks.reproduce --data-root data --set knn_cache_dir=knn_cache "
        "--runs runs --out exp, x and benchmarks/runs/a/grid_0")
    # Relative paths and words that only contain such a name are left alone.
    kept = "`../shared/data` and runs/tmp/x and a/work/b and docs/readings.md"
    assert report.relativise(kept) == kept


def test_no_machine_paths_in_the_docs():
    found = []
    for path in sorted(DOCS.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".py", ".js", ".yml", ".yaml"}:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "machine paths in docs/:\n" + "\n".join(found)


def _documented() -> set[str]:
    names = set()
    for page in (DOCS / "api").glob("*.md"):
        names |= set(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), flags=re.M))
    return names


def test_every_public_model_and_layer_has_an_api_entry():
    import dhmrec_pyg.models
    import dhmrec_pyg.nn

    documented = _documented()
    for module in (dhmrec_pyg.nn, dhmrec_pyg.models):
        missing = [n for n in module.__all__ if f"{module.__name__}.{n}" not in documented and n != "MODELS"]
        assert not missing, f"{module.__name__} names without an API entry in docs/api/: {missing}"
    for name in ("dhmrec_pyg.training.Trainer", "dhmrec_pyg.training.TrainConfig", "dhmrec_pyg.load_run",
                 "dhmrec_pyg.data.load_dataset", "dhmrec_pyg.data.open_dataset", "dhmrec_pyg.data.prepare_dataset"):
        assert name in documented, name


def test_docstring_markup_becomes_markdown():
    rst = _rst_markup()
    text = (
        "Fuse the views, :math:`\\alpha_{pos}` and :class:`~dhmrec_pyg.nn.PosNegAttention`\n"
        "(see :func:`dhmrec_pyg.nn.knn_graph` and :meth:`.forward`). Run it::\n"
        "\n"
        "    python x.py\n"
        "\n"
        "Args:\n"
        "    x: the input\n"
        "\n"
        "        .. math::\n"
        "            a_{i} = b_{i}\n"
        "\n"
        "            c = d\n"
        "\n"
        "        after the block\n"
    )
    out = rst.rst_to_markdown(text)
    assert "$\\alpha_{pos}$" in out and ":math:" not in out
    assert "`PosNegAttention`" in out and "`dhmrec_pyg.nn.knn_graph`" in out and "`forward`" in out
    assert "Run it:\n" in out and "::" not in out
    # Each paragraph of a math block is one display, at the directive's indentation.
    assert "        $$\n        a_{i} = b_{i}\n        $$\n\n        $$\n        c = d\n        $$\n\n        after" in out


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="the docs extra (mkdocs-material, mkdocstrings[python]) is not installed")
def test_site_builds_strict_with_the_api_pages(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {page: (site / page / "index.html").read_text(encoding="utf-8")
             for page in ("api/models", "api/nn", "api/training", "api/data")}
    for page, anchor in [("api/models", "dhmrec_pyg.models.DHMRec"), ("api/models", "dhmrec_pyg.models.FREEDOM"),
                         ("api/nn", "dhmrec_pyg.nn.PosNegAttention"), ("api/nn", "dhmrec_pyg.nn.LightGCNConv"),
                         ("api/training", "dhmrec_pyg.training.Trainer"), ("api/training", "dhmrec_pyg.load_run"),
                         ("api/data", "dhmrec_pyg.data.prepare_dataset")]:
        assert f'id="{anchor}"' in pages[page], f"{anchor} not on {page}"
    # The docstrings' reST became Markdown: maths for MathJax, no raw roles left.
    assert 'class="arithmatex"' in pages["api/models"]
    assert not any(":math:`" in text or ":class:`" in text for text in pages.values())
    assert not [p for p in site.rglob("*.html") if MACHINE_PATH.search(p.read_text(encoding="utf-8"))]
