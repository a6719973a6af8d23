"""Property-based fuzzing of the MMRec loader with malformed ``.inter`` and ``.npy`` files.

Whatever the bytes, the only exception that may escape is :class:`~dhmrec_pyg.data.DataError`, its
message names the offending file and the field (column, line, header, array, shape, dtype, rows), and
the data folder is left exactly as it was. Examples per test: ``DHMREC_FUZZ_EXAMPLES`` (default 150;
run with ``--hypothesis-show-statistics`` to see the counts).
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dhmrec_pyg.data import DataError, MMRecDataset, load_mmrec

N_EXAMPLES = int(os.environ.get("DHMREC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NAME = "fz"
FIELD_WORDS = ("column", "line", "header", "array", "row", "shape", "dtype", "field", "value")

# ------------------------------------------------------------------------------ .inter strategies
COLUMNS = ["userID", "itemID", "x_label", "rating", "timestamp"]
token = st.one_of(
    st.integers(0, 12).map(str),  # mostly plausible IDs, so that deeper checks are reached
    st.integers(0, 12).map(str),
    st.sampled_from(["0", "1", "2", "3", "-1", "-0", "+4", "1.5", "1e3", "", " ", "NaN", "inf",
                     "0x10", "٣", "²", "9" * 11, "2147483647", "2147483648", "99999999999999999999",
                     "00000000007", "\x00", "abc", '"1"']),
    st.text(max_size=6),
)
header = st.one_of(
    st.just(["userID", "itemID", "x_label"]),
    st.permutations(COLUMNS),
    st.lists(st.sampled_from(COLUMNS + ["userid", "item", " userID", "x_label ", "", "é"]), max_size=6),
)


@st.composite
def inter_bytes(draw) -> bytes:
    """A ``.inter`` file: mostly tab-separated text with defects, sometimes raw bytes."""
    mode = draw(st.integers(0, 9))
    if mode == 0:
        return draw(st.binary(max_size=200))
    if mode <= 4:  # chaos: any header, rows of random tokens and lengths
        cols = draw(header)
        sep = draw(st.sampled_from(["\t"] * 6 + [",", " ", ";"]))
        rows = draw(st.lists(st.lists(token, min_size=max(len(cols) - 1, 0), max_size=len(cols) + 1),
                             max_size=25))
    else:  # a valid file with a few defects, so that the deeper checks are reached
        cols = [c for c in draw(st.permutations(COLUMNS)) if c in COLUMNS[:3] or draw(st.booleans())]
        sep = "\t"
        rows = [[str(draw(st.integers(0, 2))) if c == "x_label" else str(draw(st.integers(0, 9))) for c in cols]
                for _ in range(draw(st.integers(0, 20)))]
        for _ in range(draw(st.integers(0, 2))):
            if not rows:
                break
            r = draw(st.integers(0, len(rows) - 1))
            action = draw(st.sampled_from(["token", "drop", "add", "dup", "label", "header"]))
            if action == "token" and rows[r]:
                rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(token)
            elif action == "drop":
                rows[r] = rows[r][:-1]
            elif action == "add":
                rows[r] = rows[r] + [draw(token)]
            elif action == "dup":
                rows.append(list(rows[r]))
            elif action == "label" and "x_label" in cols:
                j = cols.index("x_label")
                for row in rows:
                    if j < len(row):  # an earlier "drop" may have shortened this row
                        row[j] = draw(st.sampled_from(["1", "2"]))
            else:
                cols = list(cols)
                cols[draw(st.integers(0, len(cols) - 1))] = draw(st.sampled_from(COLUMNS + ["user_id", ""]))
    lines = [sep.join(cols)] + [sep.join(r) for r in rows]
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\t", "#"])))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join(lines) + draw(st.sampled_from(["", end]))
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"])), errors="replace")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def valid_inter(draw) -> Tuple[bytes, int]:
    """A well-formed ``.inter`` file and its number of items."""
    n_items = draw(st.integers(1, 8))
    pairs = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, n_items - 1), st.integers(0, 2)),
                          min_size=1, max_size=20))
    pairs[0] = (pairs[0][0], pairs[0][1], 0)
    text = "userID\titemID\tx_label\n" + "".join(f"{u}\t{i}\t{x}\n" for u, i, x in pairs)
    return text.encode(), n_items


# -------------------------------------------------------------------------------- .npy strategies
def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


DTYPES = ["float32", "float64", "float16", "int8", "int64", "uint16", "bool", "complex64", "U3", "S2",
          "datetime64[s]"]


@st.composite
def npy_bytes(draw, n_rows: Optional[int] = None) -> bytes:
    """A ``*_feat.npy`` file: well-formed arrays of odd dtypes/shapes/values, or damaged bytes."""
    kind = draw(st.sampled_from(["array", "array", "array", "truncated", "flipped", "random", "npz",
                                 "object", "structured"]))
    rows = n_rows if n_rows is not None and draw(st.booleans()) else draw(st.integers(0, 9))
    shape = draw(st.sampled_from([(rows, draw(st.integers(0, 4))), (rows,), (), (rows, 2, 2), (rows, 3)]))
    if kind in ("array", "truncated", "flipped"):
        dtype = draw(st.sampled_from(DTYPES))
        values = draw(st.lists(st.sampled_from([0.0, 1.5, -2.0, np.nan, np.inf, -np.inf, 1e39, 7.0]),
                               min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                arr = np.array(values, dtype=np.float64).reshape(shape).astype(dtype)
            except (ValueError, TypeError, OverflowError):
                arr = np.zeros(shape, dtype=dtype)
        if draw(st.booleans()):
            arr = np.asfortranarray(arr)
        data = _npy(arr)
        if kind == "truncated":
            data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        elif kind == "flipped":
            pos = draw(st.integers(0, len(data) - 1))
            data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
        return data
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "npz":
        buf = io.BytesIO()
        np.savez(buf, x=np.ones((rows, 2), dtype=np.float32))
        return buf.getvalue()
    if kind == "object":  # a pickled payload: must be refused, never unpickled
        return _npy(np.array([{"a": 1}, None] * max(rows, 1), dtype=object).reshape(-1, 1), allow_pickle=True)
    return _npy(np.zeros((rows,), dtype=[("a", "f4"), ("b", "i4")]))


# ------------------------------------------------------------------------------------- checking
def _snapshot(folder: Path) -> Dict[str, Tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def _check_message(exc: DataError, files: List[str], folder: Path) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    assert any(f in msg for f in files) or str(folder) in msg, f"no file named in: {msg}"
    assert any(w in msg.lower() for w in FIELD_WORDS) or any(c in msg for c in ("userID", "itemID", "x_label")), \
        f"no field named in: {msg}"


def _load_and_check(files: Dict[str, bytes], via_dataset: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / NAME
        folder.mkdir()
        for fname, payload in files.items():
            (folder / fname).write_bytes(payload)
        before = _snapshot(folder)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if via_dataset:
                    data = MMRecDataset(tmp, NAME)[0]
                else:
                    data = load_mmrec(folder)
        except DataError as exc:
            event("DataError from " + next((f for f in sorted(files) if f in str(exc)), "the folder"))
            _check_message(exc, list(files), folder)
            assert _snapshot(folder) == before, "the data folder was modified"
            return
        # Accepted: the graph must be consistent with what the files say.
        event("accepted")
        store = data["user", "interacts", "item"]
        n_u, n_i = int(data["user"].num_nodes), int(data["item"].num_nodes)
        for attr in ("edge_index", "val_edge_index", "test_edge_index"):
            ei = store[attr]
            assert ei.dtype.is_floating_point is False and ei.dim() == 2 and ei.size(0) == 2
            if ei.numel():
                assert int(ei[0].max()) < n_u and int(ei[1].max()) < n_i and int(ei.min()) >= 0
        assert store.edge_index.size(1) > 0
        for key in data["item"].keys():
            if key.startswith("x_"):
                x = data["item"][key]
                assert x.dim() == 2 and x.size(0) == n_i and bool(x.isfinite().all())
        after = _snapshot(folder)
        if via_dataset:  # the only addition allowed is the processed cache
            after = {k: v for k, v in after.items() if not k.startswith("processed")}
        assert after == before, "the data folder was modified"


@FUZZ
@given(inter=inter_bytes(), with_features=st.booleans())
def test_fuzzed_inter_files_raise_only_data_errors(inter, with_features):
    files = {f"{NAME}.inter": inter}
    if with_features:
        files["image_feat.npy"] = _npy(np.ones((13, 2), dtype=np.float32))
    _load_and_check(files)


@FUZZ
@given(inter=valid_inter(), feats=st.data())
def test_fuzzed_npy_files_raise_only_data_errors(inter, feats):
    text, n_items = inter
    files = {f"{NAME}.inter": text, "image_feat.npy": feats.draw(npy_bytes(n_items))}
    if feats.draw(st.booleans()):
        files["text_feat.npy"] = feats.draw(npy_bytes(n_items))
    _load_and_check(files)


@settings(FUZZ, max_examples=max(N_EXAMPLES // 3, 10))
@given(inter=st.one_of(inter_bytes(), valid_inter().map(lambda t: t[0])), feats=st.data())
def test_fuzzed_folders_through_the_cached_dataset(inter, feats):
    files = {f"{NAME}.inter": inter}
    if feats.draw(st.booleans()):
        files["image_feat.npy"] = feats.draw(npy_bytes(13))
    _load_and_check(files, via_dataset=True)


def test_a_pickled_feature_file_is_refused_without_being_unpickled(tmp_path, monkeypatch):
    import pickle

    def boom(*args, **kwargs):
        raise AssertionError("the loader unpickled a file")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / f"{NAME}.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    (folder / "image_feat.npy").write_bytes(_npy(np.array([[{"x": 1}]], dtype=object), allow_pickle=True))
    with pytest.raises(DataError, match="image_feat.npy"):
        load_mmrec(folder)
