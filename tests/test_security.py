"""Security: nothing in the code base loads a pickle, and dataset names cannot leave the data root.

The scan is syntactic (Python's ``ast``): every ``np.load(...)`` must say ``allow_pickle=False``,
every ``torch.load(...)`` must say ``weights_only=True``, ``yaml.load`` needs a safe loader, and
pickle-based loaders (``pickle.load(s)``, ``Unpickler``, ``pandas.read_pickle``, ``joblib.load``,
PyG's ``fs.torch_load`` which falls back to ``weights_only=False``...) are not used at all.
Imports are followed, so ``from torch import load as l; l(f)`` is caught too.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch

from dhmrec_pyg.data import DataError, MMRecDataset, load_dataset, load_mmrec, write_mmrec

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("dhmrec_pyg", "benchmarks", "examples", "tests")

#: Loader -> (keyword, the only accepted constant value); ``None``: never allowed.
RULES: Dict[str, Optional[tuple]] = {
    "numpy.load": ("allow_pickle", False),
    "torch.load": ("weights_only", True),
    "pickle.load": None,
    "pickle.loads": None,
    "pickle.Unpickler": None,
    "_pickle.load": None,
    "_pickle.loads": None,
    "dill.load": None,
    "dill.loads": None,
    "cloudpickle.load": None,
    "cloudpickle.loads": None,
    "joblib.load": None,
    "pandas.read_pickle": None,
    "shelve.open": None,
    "yaml.unsafe_load": None,
    "yaml.full_load": None,
    "torch_geometric.io.fs.torch_load": None,
    "torch_geometric.io.torch_load": None,
}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _dotted(node: ast.AST) -> Optional[str]:
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def unsafe_loads(source: str, filename: str = "<string>") -> List[str]:
    """Offending calls in ``source`` as ``'file:line: call (reason)'`` strings."""
    tree = ast.parse(source, filename)
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    out: List[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        full = full.replace("np.", "numpy.", 1) if full.startswith("np.") else full
        full = full.replace("pd.", "pandas.", 1) if full.startswith("pd.") else full
        where = f"{filename}:{node.lineno}: {name}("
        kwargs = {k.arg: k.value for k in node.keywords}
        if full == "yaml.load":
            loader = kwargs.get("Loader", node.args[1] if len(node.args) > 1 else None)
            if loader is None or (_dotted(loader) or "").split(".")[-1] not in SAFE_YAML_LOADERS:
                out.append(where + " without a safe Loader)")
            continue
        if full not in RULES:
            continue
        rule = RULES[full]
        if rule is None:
            out.append(where + " unpickles)")
            continue
        key, value = rule
        given = kwargs.get(key)
        if not (isinstance(given, ast.Constant) and given.value is value):
            out.append(where + f" without {key}={value})")
    return out


def _python_files() -> List[Path]:
    files: List[Path] = []
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(REPO / top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            files += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(files)


def test_no_code_in_the_repository_loads_a_pickle():
    files = _python_files()
    assert any(f.name == "trainer.py" for f in files) and len(files) > 20
    offenders = [o for f in files for o in unsafe_loads(f.read_text(), str(f.relative_to(REPO)))]
    assert not offenders, "unsafe loads found:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "snippet, bad",
    [
        ("import numpy as np\nnp.load('a')", True),
        ("import numpy as np\nnp.load('a', allow_pickle=True)", True),
        ("import numpy as np\nnp.load('a', allow_pickle=False)", False),
        ("import numpy\nnumpy.load('a', mmap_mode='r')", True),
        ("from numpy import load as l\nl('a')", True),
        ("import torch\ntorch.load('a')", True),
        ("import torch\ntorch.load('a', weights_only=False)", True),
        ("import torch\ntorch.load('a', map_location='cpu', weights_only=True)", False),
        ("import torch\nopts = {}\ntorch.load('a', **opts)", True),
        ("from torch import load\nload('a')", True),
        ("import pickle\npickle.loads(b'')", True),
        ("import pickle as p\np.load(open('f', 'rb'))", True),
        ("from pickle import Unpickler\nUnpickler(f).load()", True),
        ("import pandas as pd\npd.read_pickle('f')", True),
        ("from torch_geometric.io import fs\nfs.torch_load('f')", True),
        ("import yaml\nyaml.load(s)", True),
        ("import yaml\nyaml.load(s, Loader=yaml.SafeLoader)", False),
        ("import yaml\nyaml.safe_load(s)", False),
        ("import pickle\npickle.dumps(1)", False),
        ("x.load('a')", False),
    ],
)
def test_the_scanner_catches_unsafe_loads(snippet, bad):
    assert bool(unsafe_loads(snippet)) is bad


def test_training_resume_and_caches_load_nothing_unsafe(tmp_path, monkeypatch):
    """The same rule, checked at run time on a train + resume + evaluate round."""
    from dhmrec_pyg.cli import main

    calls = {"torch": 0, "numpy": 0}
    real_torch_load, real_np_load = torch.load, np.load

    def torch_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, kwargs
        calls["torch"] += 1
        return real_torch_load(*args, **kwargs)

    def np_load(*args, **kwargs):
        assert kwargs.get("allow_pickle") is False, kwargs
        calls["numpy"] += 1
        return real_np_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", torch_load)
    monkeypatch.setattr(np, "load", np_load)
    root, run = str(tmp_path / "data"), tmp_path / "run"
    base = ["--data-root", root, "--quiet", "--dataset", "synthetic-tiny", "--model", "dhmrec",
            "--set", "embedding_dim=8", "--set", "batch_size=1024"]
    assert main(["train", "--model", "lightgcn", *base, "--out", str(run), "--epochs", "1"]) == 0
    assert main(["train", "--model", "lightgcn", *base, "--out", str(tmp_path / "again"), "--epochs", "1"]) == 0  # caches hit
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert main(["evaluate", str(run)]) == 0
    assert calls["torch"] >= 3 and calls["numpy"] >= 2


# ------------------------------------------------------------------------------ data-root escape
def _tree(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _toy(folder: Path) -> None:
    users = np.repeat(np.arange(6), 3)
    write_mmrec({"userID": users, "itemID": (users + np.tile([0, 1, 2], 6)) % 5,
                 "x_label": np.tile([0, 1, 2], 6)}, folder, folder.name)


@pytest.mark.parametrize(
    "name",
    ["..", ".", "../outside", "../../outside", "sub/../../outside", "a/b", "/abs/outside",
     "..\\outside", "out\0side", ""],
)
def test_dataset_names_cannot_escape_the_data_root(tmp_path, monkeypatch, name):
    root = tmp_path / "root"
    root.mkdir()
    _toy(tmp_path / "outside")  # a valid dataset next to the root: must never be reached by name
    (root / "sub").mkdir()
    cwd = tmp_path / "elsewhere" / "deeper" / "still"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)  # relative names resolve to no existing folder from here
    before = _tree(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(name, root=root)
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(DataError):
        MMRecDataset(root, name)
    assert _tree(tmp_path) == before  # nothing written anywhere, no cache outside the root


@pytest.mark.parametrize("name", ["../outside/outside", "../../x", "a/b", "..", "/etc/passwd"])
def test_inter_file_names_cannot_leave_the_dataset_folder(tmp_path, name):
    _toy(tmp_path / "outside")
    _toy(tmp_path / "ds")
    with pytest.raises(DataError, match="plain"):
        load_mmrec(tmp_path / "ds", name)


def test_an_explicit_folder_path_is_read_in_place_and_never_written(tmp_path):
    _toy(tmp_path / "mine")
    before = {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()}
    data = load_dataset(str(tmp_path / "mine"), root=tmp_path / "root")
    assert int(data["user"].num_nodes) == 6
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()} == before
    assert not (tmp_path / "root").exists()
