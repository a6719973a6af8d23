"""Item text: reading a text file keyed by item ID and encoding it with sentence-transformers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .read import cell_to_str, read_table

__all__ = ["encode_text", "read_texts"]

_TEXT_EXTRA = "pip install 'dhmrec_pyg[text]' (or: pip install sentence-transformers)"


def read_texts(path: Path, item_col: str, text_col: str) -> dict[str, str]:
    """The texts of a CSV or Parquet file by item ID: the first non-empty text of each ID.

    Raises:
        DataError: for a missing file or column, or no row with both an ID and a text.
    """
    values, _ = read_table(path, [item_col, text_col], "text file")
    texts: dict[str, str] = {}
    for raw_id, raw_text in zip(values[item_col], values[text_col]):
        tid = cell_to_str(raw_id)
        text = "" if raw_text is None else str(raw_text).strip()
        if tid and text and tid not in texts:
            texts[tid] = text
    if not texts:
        raise DataError(f"{path}: no row with both an {item_col!r} ID and a non-empty {text_col!r}")
    return texts


def encode_text(
    texts: Sequence[str], model: str | Path, *, batch_size: int = 64, device: str | None = None
) -> np.ndarray:
    """Encode texts into dense vectors with a sentence-transformers model.

    Needs the optional ``text`` extra (``pip install 'dhmrec_pyg[text]'``, i.e.
    ``sentence-transformers``). The model is loaded by sentence-transformers, which may download it
    when ``model`` is a hub name rather than a local folder.

    Args:
        texts: the texts, one per item.
        model: a local model folder or a model name (e.g. ``'all-MiniLM-L6-v2'``).
        batch_size: encoding batch size.
        device: e.g. ``'cpu'`` or ``'cuda'``; sentence-transformers chooses by default.

    Returns:
        float32 array ``[len(texts), d]``.

    Raises:
        ImportError: if sentence-transformers is not installed (the message says what to install).
        DataError: if ``texts`` is empty or the model returns a malformed or non-finite array.
    """
    if not texts:
        raise DataError("encode_text: no text to encode")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(f"encoding item text needs sentence-transformers: {_TEXT_EXTRA}") from e
    encoder = SentenceTransformer(str(model), device=device)
    out = encoder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    x = np.asarray(out, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(texts):
        raise DataError(f"encode_text: model {str(model)!r} returned shape {x.shape}, expected ({len(texts)}, d)")
    if not np.isfinite(x).all():
        raise DataError(f"encode_text: model {str(model)!r} returned non-finite values")
    return x
