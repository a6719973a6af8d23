"""Bring your own data: turn an interaction table and per-item feature files into the MMRec layout.

:func:`prepare_dataset` reads

* an **interaction table**: a CSV file (delimiter ``,``, ``;`` or tab, detected from the header
  line; a header row is required) or a Parquet file (needs ``pyarrow``), with a user column and an
  item column holding IDs of any kind (text or numbers, compared as text after stripping spaces)
  and optionally a timestamp column (numbers, or ISO 8601 dates such as ``2023-05-01T12:00:00``);
* zero or more **feature files keyed by item ID**, one per modality:

  - ``.npz`` written with ``np.savez(path, ids=ids, features=x)``: ``ids`` a 1-D array of item IDs
    (integers, or strings stored as a unicode array, e.g. ``np.array(ids, dtype=str)``; object
    arrays are refused because loading them needs pickle) and ``features`` a 2-D numeric array
    with one row per ID;
  - ``.csv`` / ``.tsv`` / ``.txt``: the item ID in the first column and one feature per further
    column. A header row is optional: the first row is a header when it is declared one
    (``feature_header=True``) or when its first field is ``id``, ``item``, ``item_id``, ``itemid``
    or the interaction table's item column name (case-insensitive). A first row that is neither
    is data, so a non-numeric value in it is an error naming the file, the line and the column,
    never a header guessed from it;

* optionally a **text file** (CSV or Parquet, keyed by the same item column) whose text column is
  encoded into a ``text`` modality with a sentence-transformers model (:func:`encode_text`).

It then

1. drops rows with an empty user or item ID, and duplicate ``(user, item)`` pairs (keeping the
   earliest by timestamp, else the first in the file);
2. optionally keeps the ``k``-core: iteratively removes users and items with fewer than ``k``
   interactions until every remaining user and item has at least ``k``;
3. maps IDs to dense 0-based integers: users sorted by ID; items with interactions first (sorted by
   ID), then *cold items* - items that have a feature (or text) row but appear in no row of the
   interaction table - sorted by ID. IDs made only of digits sort numerically. Items removed by
   the k-core filter are dropped, not kept as cold items;
4. assembles one feature matrix per modality, filling items without a feature row with the mean
   row of the modality (or zeros), and ignoring rows for items that are not kept;
5. splits each user's interactions with MMRec's rule (:func:`~dhmrec_pyg.data.split.mmrec_split`,
   random, seeded) or chronologically (:func:`~dhmrec_pyg.data.split.chronological_split`);
6. writes the folder: ``NAME.inter`` (``NAME`` is the folder's base name, so that
   :func:`~dhmrec_pyg.data.io.load_mmrec` finds it), ``<modality>_feat.npy``, ``user_map.csv`` and
   ``item_map.csv`` (columns ``original_id`` and ``userID`` / ``itemID``) and ``prepare.json`` (the
   report and the options used). A new folder is built next to its destination and renamed into
   place, so that a failure leaves nothing half-written; writing into a non-empty folder needs
   ``overwrite=True`` (each file is then replaced atomically).

One module per step: :mod:`.read` (input tables), :mod:`.filter` (duplicates, k-core),
:mod:`.ids` (ID maps), :mod:`.features` and :mod:`.text` (item features), :mod:`.split`,
:mod:`.write` and :mod:`.report`; :mod:`.pipeline` runs them in order.

Everything that goes wrong with the input raises :class:`~dhmrec_pyg.data.errors.DataError`
naming the file, the column or array, and the offending line or ID. Nothing is ever unpickled.
"""

from .features import read_item_features
from .ids import read_id_map
from .pipeline import FILLS, prepare_dataset
from .report import ModalityReport, PrepareReport
from .split import SPLITS
from .text import encode_text

__all__ = [
    "FILLS",
    "ModalityReport",
    "PrepareReport",
    "SPLITS",
    "encode_text",
    "prepare_dataset",
    "read_id_map",
    "read_item_features",
]
