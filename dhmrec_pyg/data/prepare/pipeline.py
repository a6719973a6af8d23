"""The entry point, :func:`prepare_dataset`: read, filter, map IDs, assemble features, split, write."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import MODALITY_NAME_RE
from .features import Loaded, feature_matrices, read_item_features
from .filter import drop_duplicates, k_core_filter
from .ids import IdMaps, id_maps
from .read import Interactions, check_file, read_interactions
from .report import ModalityReport, PrepareReport
from .split import SPLITS, split_columns
from .text import encode_text, read_texts
from .write import check_out, write_dataset, write_files

__all__ = ["FILLS", "prepare_dataset"]

#: How a kept item without a feature row is filled.
FILLS: tuple[str, ...] = ("mean", "zeros")


def _check_options(
    features: dict[str, str | Path], split: str, timestamp_col: str | None, fill: str, k_core: int,
    text_file: str | Path | None, text_model: str | Path | None, text_modality: str,
) -> None:
    """Refuse a bad option, modality name or missing feature file before reading anything."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if split == "chronological" and not timestamp_col:
        raise DataError("split='chronological' needs a timestamp column (timestamp_col / --timestamp-col)")
    if fill not in FILLS:
        raise DataError(f"fill must be one of {list(FILLS)}, got {fill!r}")
    if not isinstance(k_core, int) or k_core < 0:
        raise DataError(f"k_core must be a non-negative integer, got {k_core!r}")
    if text_file is not None:
        if text_model is None:
            raise DataError(f"{text_file}: encoding item text needs a model (text_model / --text-model)")
        if text_modality in features:
            raise DataError(f"modality {text_modality!r} is given both as a feature file and as text to encode")
        features_and_text = [*features, text_modality]
    else:
        features_and_text = list(features)
    for m in features_and_text:
        if not MODALITY_NAME_RE.match(m):
            raise DataError(f"modality name {m!r} must be non-empty and use only letters, digits and underscores")
    for m, p in features.items():
        check_file(Path(p), f"feature file of modality {m!r}")


def _read_modalities(
    features: dict[str, str | Path], item_col: str, header: bool | None, text_file: str | Path | None,
    text_col: str, text_modality: str,
) -> tuple[dict[str, Loaded], dict[str, str]]:
    """The feature files (and texts), keyed by original item ID.

    Returns:
        modality -> its rows (the text modality's rows are ``None``, not yet encoded), and the
        texts by item ID.
    """
    loaded: dict[str, Loaded] = {}
    for m, p in sorted(features.items()):
        ids, x = read_item_features(p, item_col, header=header)
        loaded[m] = (ids, x, str(p))
    texts: dict[str, str] = {}
    if text_file is not None:
        texts = read_texts(Path(text_file), item_col, text_col)
        loaded[text_modality] = (list(texts), None, str(text_file))
    return loaded, texts


def _make_report(
    src: Path, out: Path, name: str, table: Interactions, k_core: int, warm_u: np.ndarray, warm_i: np.ndarray,
    ids: IdMaps, split: str, seed: int, x_label: np.ndarray, mreports: dict[str, ModalityReport],
) -> PrepareReport:
    """The :class:`PrepareReport` of a prepared dataset."""
    return PrepareReport(
        source=str(src),
        out_folder=str(out),
        name=name,
        rows_read=table.rows_read,
        rows_missing_id=table.rows_missing_id,
        duplicates_dropped=table.duplicates,
        k_core=int(k_core),
        k_core_rounds=table.k_core_rounds,
        k_core_dropped_interactions=table.k_core_dropped,
        k_core_dropped_users=int(table.users_before_core - warm_u.size),
        k_core_dropped_items=int(table.items_before_core - warm_i.size),
        users=int(ids.user_ids.size),
        items=int(ids.item_ids.size),
        warm_items=int(ids.warm_ids.size),
        cold_items=int(ids.cold_ids.size),
        cold_items_dropped=ids.cold_dropped,
        interactions=int(ids.user_new.size),
        split=split,
        seed=int(seed),
        train=int((x_label == 0).sum()),
        valid=int((x_label == 1).sum()),
        test=int((x_label == 2).sum()),
        modalities=mreports,
        files=[f"{name}.inter", *(f"{m}_feat.npy" for m in sorted(mreports)), "user_map.csv", "item_map.csv",
               "prepare.json"],
    )


def prepare_dataset(
    interactions: str | Path,
    out_folder: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    timestamp_col: str | None = None,
    features: Mapping[str, str | Path] | None = None,
    feature_header: bool | None = None,
    split: str = "mmrec",
    seed: int = 0,
    k_core: int = 0,
    fill: str = "mean",
    keep_cold_items: bool = True,
    text_file: str | Path | None = None,
    text_col: str = "text",
    text_model: str | Path | None = None,
    text_modality: str = "text",
    text_device: str | None = None,
    overwrite: bool = False,
) -> PrepareReport:
    """Turn an interaction table and item feature files into an MMRec-layout dataset folder.

    See :mod:`dhmrec_pyg.data.prepare` for the accepted formats and the exact rules.

    Args:
        interactions: CSV (``,``/``;``/tab, header row) or Parquet file of interactions.
        out_folder: the dataset folder to write; its base name becomes the dataset name.
        user_col: the user ID column.
        item_col: the item ID column (also the ID column of ``text_file``).
        timestamp_col: optional timestamp column (numbers or ISO 8601); required by
            ``split='chronological'`` and written to the ``.inter`` file as ``timestamp``.
        features: modality name -> feature file keyed by item ID (``.npz`` or CSV), e.g.
            ``{'image': 'image.npz', 'text': 'text.csv'}``. Names use letters, digits, underscores.
        feature_header: whether the CSV feature files start with a header row; ``None``
            (default): a first row whose first field is ``id``, ``item``, ``item_id``, ``itemid``
            or ``item_col`` is one (:func:`~dhmrec_pyg.data.prepare.read_item_features`).
        split: ``'mmrec'`` (MMRec's random per-user rule, seeded by ``seed``) or ``'chronological'``.
        seed: seed of the ``'mmrec'`` split.
        k_core: if ``>= 2``, keep the ``k``-core (every user and item with at least ``k``
            interactions), applied before the split; 0 or 1 keeps everything.
        fill: the row given to kept items missing from a feature file: ``'mean'`` (the modality's
            mean row over the kept items that have one) or ``'zeros'``.
        keep_cold_items: keep items that have feature rows but no interaction (they get IDs after
            all items with interactions); if false they are left out.
        text_file: optional CSV/Parquet with columns ``item_col`` and ``text_col``; its texts are
            encoded with ``text_model`` into the modality ``text_modality``. Repeated IDs: the first
            row wins; empty texts count as missing.
        text_col: the text column of ``text_file``.
        text_model: sentence-transformers model folder or name (required with ``text_file``).
        text_modality: name of the encoded modality (default ``'text'``).
        text_device: device for the text encoder (default: sentence-transformers' choice).
        overwrite: allow writing into a non-empty folder (dataset files in it are replaced, other
            files are left alone).

    Returns:
        A :class:`PrepareReport` (also saved as ``prepare.json`` in the folder).

    Raises:
        DataError: for a missing file or column, a bad option, a malformed value, an empty result
            after filtering, a feature file sharing no ID with the interactions, or a non-empty
            output folder without ``overwrite``.
        ImportError: for text encoding without sentence-transformers (Parquet input without
            pyarrow is a DataError saying what to install).
    """
    src, out = Path(interactions), Path(out_folder)
    features = dict(features or {})
    _check_options(features, split, timestamp_col, fill, k_core, text_file, text_model, text_modality)
    replace = check_out(out, overwrite)

    # 1.-2. Interactions, without duplicates (keep the earliest, else the first in the file).
    table = read_interactions(src, user_col, item_col, timestamp_col)
    drop_duplicates(table)
    # 3. k-core.
    warm_u, warm_i = k_core_filter(table, k_core, src)
    # 4. Features (and text), keyed by original item ID.
    loaded, texts = _read_modalities(features, item_col, feature_header, text_file, text_col, text_modality)
    # 5. ID maps: users sorted; items with interactions, then cold items.
    ids = id_maps(table, warm_u, warm_i, (i for keys, _, _ in loaded.values() for i in keys), keep_cold_items)
    # 6. Feature matrices (text is encoded only for the items kept).
    rows_read_of = {m: len(item_keys) for m, (item_keys, _, _) in loaded.items()}
    if text_file is not None:
        ids_t = [i for i in texts if i in ids.item_pos]
        x_t = encode_text([texts[i] for i in ids_t], text_model, device=text_device) if ids_t else None
        loaded[text_modality] = (ids_t or list(texts), x_t, str(text_file))
    matrices, mreports = feature_matrices(loaded, rows_read_of, ids, fill, src, item_col)
    # 7. Split.
    columns = split_columns(split, seed, ids, table.ts)

    name = out.resolve().name
    report = _make_report(src, out, name, table, k_core, warm_u, warm_i, ids, split, seed, columns["x_label"], mreports)
    record: dict[str, Any] = {"report": report.to_dict(), "options": {
        "interactions": str(src), "user_col": user_col, "item_col": item_col, "timestamp_col": timestamp_col,
        "features": {m: str(p) for m, p in features.items()}, "feature_header": feature_header, "split": split,
        "seed": seed, "k_core": k_core, "fill": fill, "keep_cold_items": keep_cold_items,
        "text_file": None if text_file is None else str(text_file), "text_col": text_col,
        "text_model": None if text_model is None else str(text_model), "text_modality": text_modality,
    }}
    # 8. Write: into the existing folder (overwrite), else build beside it and rename into place.
    write_dataset(out, name, replace, lambda folder, replace_existing: write_files(
        folder, name, replace_existing, columns, matrices, ids, record))
    return report
