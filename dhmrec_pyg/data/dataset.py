"""A cached PyG dataset over an MMRec folder, and :func:`load_dataset`, the one-call entry point."""

from __future__ import annotations

import glob
import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from ..files import atomic_write
from ..schema import EDGE_TYPE, modality_names, split_edge_index, split_edge_type
from .errors import DataError
from .io import find_mmrec_files, load_mmrec

__all__ = ["MMRecDataset", "load_dataset"]

_CACHE_FORMAT = "dhmrec_pyg.mmrec-cache.v3"
_HASH_CONTENT_LIMIT = 8 * 2**20  # raw files up to 8 MiB are fingerprinted by content


def _writable(folder: Path) -> bool:
    """Whether we may write in ``folder``.

    ``os.access`` says yes to root even for a folder without write bits (as
    ``../shared/data`` is laid out), so the mode bits are checked as well: a
    folder marked read-only is left untouched, whoever runs the code.
    """
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(folder, os.W_OK)


def _fingerprint(paths: list[Path]) -> str:
    """Hash of the raw files: names and sizes, plus contents (small files) or mtimes (large ones)."""
    h = hashlib.sha256(_CACHE_FORMAT.encode())
    for path in paths:
        st = path.stat()
        h.update(f"\0{path.name}\0{st.st_size}\0".encode())
        if st.st_size <= _HASH_CONTENT_LIMIT:
            h.update(path.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def _check_plain_name(name: str, what: str = "dataset name") -> None:
    """Refuse a ``name`` that is empty, ``.``/``..`` or holds a path separator (it could leave the root)."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or (os.sep in name)
        or (os.altsep is not None and os.altsep in name)
        or "\0" in name
    ):
        raise DataError(f"{what} {name!r} must be a plain folder name (no path separators, not '.' or '..')")


def check_unambiguous(name: str, root: str | Path) -> None:
    """Refuse a plain dataset ``name`` that names two folders: ``./name`` in the working directory
    and ``root/name``.

    A synthetic profile name is never ambiguous (it always means the generated data), nor is a
    path (with a separator: ``./name`` or ``root/name`` picks one folder), nor a name whose two
    folders are one (``root`` is ``.``).

    Raises:
        DataError: naming both folders.
    """
    from .synthetic import synthetic_profile_of

    text = str(name)
    try:
        _check_plain_name(text)
    except DataError:
        return
    here, under = Path(text), Path(root).expanduser() / text
    if synthetic_profile_of(text) is not None or not (here.is_dir() and under.is_dir()) or here.samefile(under):
        return
    raise DataError(
        f"dataset {text!r} is ambiguous: both {here.resolve()} (in the working directory) and {under.resolve()} "
        f"(under the data root) exist; give the path of the one you mean ({os.path.join('.', text)} or {under})"
    )


def _payload_sha256(obj: dict) -> str:
    """SHA-256 over a cache dict's entries (names, dtypes, shapes and bytes), ``checksum`` excluded."""
    h = hashlib.sha256()

    def feed(name: str, value: object) -> None:
        """Hash one entry (recursing into dicts) under its path ``name``."""
        if isinstance(value, dict):
            for k in sorted(value):
                feed(f"{name}/{k}", value[k])
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"\0{name}\0{type(value).__name__}\0{value!r}".encode())

    for key in sorted(k for k in obj if k != "checksum"):
        feed(key, obj[key])
    return h.hexdigest()


def _to_plain(data: HeteroData, key: str = "", notes: list[str] | None = None) -> dict:
    """The graph as a dict of tensors, ints and strings (loadable with ``weights_only=True``).

    ``key`` is the fingerprint of the raw files the graph was built from; ``notes`` are the
    warnings building it gave (shown again on every load of the cache); ``checksum`` is
    :func:`_payload_sha256` of everything else, so that a corrupted file is detected.
    """
    item = data["item"]
    obj = {
        "format": _CACHE_FORMAT,
        "key": key,
        "name": str(data.name),
        "num_users": int(data["user"].num_nodes),
        "num_items": int(item.num_nodes),
        "edge_index": split_edge_index(data, "train"),
        "val_edge_index": split_edge_index(data, "val"),
        "test_edge_index": split_edge_index(data, "test"),
        "features": {m: item[f"x_{m}"] for m in modality_names(data)},
        "warnings": list(notes or []),
    }
    obj["checksum"] = _payload_sha256(obj)
    return obj


def _from_plain(obj: object, path: Path, key: str | None = None) -> tuple[HeteroData, list[str]]:
    """The graph of a cache dict written by :func:`_to_plain`, and the warnings recorded with it.

    Raises:
        DataError: naming ``path`` for a foreign, stale (``key`` differs), corrupted or malformed cache.
    """
    keys = {"format", "key", "checksum", "name", "num_users", "num_items", "edge_index", "val_edge_index",
            "test_edge_index", "features", "warnings"}
    if not isinstance(obj, dict) or obj.get("format") != _CACHE_FORMAT or set(obj) != keys:
        raise DataError(f"{path}: not a {_CACHE_FORMAT} cache file")
    if key is not None and obj["key"] != key:
        raise DataError(f"{path}: stale cache (built from other raw files: key {obj['key']!r}, expected {key!r})")
    if not isinstance(obj["features"], dict) or obj["checksum"] != _payload_sha256(obj):
        raise DataError(f"{path}: cache checksum mismatch (the file is corrupted)")
    notes = obj["warnings"]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise DataError(f"{path}: cache entry 'warnings' is malformed")
    data = HeteroData()
    data.name = obj["name"]
    data["user"].num_nodes = int(obj["num_users"])
    data["item"].num_nodes = int(obj["num_items"])
    for split, attr in (("train", "edge_index"), ("val", "val_edge_index"), ("test", "test_edge_index")):
        t = obj[attr]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.dim() != 2 or t.size(0) != 2:
            raise DataError(f"{path}: cache entry {attr!r} is malformed")
        data[split_edge_type(split)].edge_index = t
        if split != "train":  # the earlier layout's attribute, for code that still reads it
            data[EDGE_TYPE][attr] = t
    for modality, x in sorted(obj["features"].items()):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.size(0) != data["item"].num_nodes:
            raise DataError(f"{path}: cache entry for modality {modality!r} is malformed")
        data["item"][f"x_{modality}"] = x
    return data, notes


def _load_recording(folder: str, name: str) -> tuple[HeteroData, list[str]]:
    """:func:`load_mmrec` of ``folder``, and the messages of the :class:`UserWarning` s it gave.

    Every warning is passed on as well (after the call), under the caller's warning filters.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_mmrec(folder, name)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return data, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


class MMRecDataset(InMemoryDataset):
    """An MMRec-layout folder ``root/name`` as a one-graph PyG dataset with an on-disk cache.

    The raw files (``NAME.inter`` and ``*_feat.npy``) are read in place from ``raw_dir = root/name``;
    the processed graph is cached in ``processed_dir = root/name/processed`` under a file name that
    contains a fingerprint of the raw files (names, sizes, and contents for files up to 8 MiB or
    modification times for larger ones), so that changing the raw folder triggers re-processing.
    If the folder is not writable the graph is built in memory on every construction instead.
    ``processed_dir=`` puts the cache in a folder of your choice (nothing is written next to the
    data); ``cache=False`` reads and writes no cache at all.

    The cache file also records that fingerprint and a SHA-256 checksum of its contents; a cache
    whose fingerprint does not match the raw files (stale) or whose checksum does not match its
    contents (corrupted) is reported with a warning and rebuilt, never used. The warnings that
    building the graph gave (duplicate pairs dropped, counts that differ from a known benchmark's)
    are kept in the cache and given again on every load, not only the first.

    The cache is a plain dict of tensors written with :func:`torch.save` and read back with
    ``torch.load(weights_only=True)`` and no fallback: unlike PyG's own ``InMemoryDataset.save`` /
    ``load`` (whose loader, in torch_geometric 2.8, retries with ``weights_only=False`` and reads
    ``pre_transform.pt`` unrestricted), a tampered cache file cannot execute code. For the same reason
    ``pre_transform`` / ``pre_filter`` are not supported.

    ``dataset[0]`` is the :class:`HeteroData` described in :func:`~dhmrec_pyg.data.load_mmrec`.

    Args:
        root: the folder that holds the dataset folder.
        name: the dataset folder's name (a plain name, no path separators).
        transform: optional transform applied on every access.
        force_reload: re-process even when a matching cache exists.
        log: print PyG's "Processing..." messages.
        processed_dir: the folder for the processed cache (created if needed); default
            ``root/name/processed``.
        cache: ``False``: build the graph from the raw files on every construction, reading and
            writing no cache file.

    Attributes:
        processed_now: whether this construction (re)built the graph from the raw files.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        transform: Callable[[HeteroData], HeteroData] | None = None,
        force_reload: bool = False,
        log: bool = False,
        *,
        processed_dir: str | Path | None = None,
        cache: bool = True,
    ) -> None:
        _check_plain_name(name)
        self.name = name
        self.cache = bool(cache)
        self._processed_dir = None if processed_dir is None else str(Path(processed_dir).expanduser())
        if self._processed_dir is not None and Path(self._processed_dir).exists() and not Path(self._processed_dir).is_dir():
            raise DataError(f"processed_dir {self._processed_dir}: a file is in the way (expected a folder)")
        folder = Path(root) / name
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder does not exist")
        self._inter_path, feats = find_mmrec_files(folder)
        self._raw_paths = [self._inter_path] + [p for _, p in feats]
        self._key = _fingerprint(self._raw_paths)
        self._fresh: HeteroData | None = None
        self.processed_now = False
        super().__init__(str(root), transform, None, None, log, force_reload)
        if self._fresh is not None:
            data = self._fresh
            self._fresh = None
        else:
            data, notes = self._load_cache(Path(self.processed_paths[0]))
            for note in notes:  # what building the graph warned about, on every load
                warnings.warn(note, UserWarning, stacklevel=2)
        self.data = data
        self.slices = None

    @property
    def raw_dir(self) -> str:
        """The dataset folder itself (``root/name``), where MMRec keeps its files."""
        return os.path.join(self.root, self.name)

    @property
    def processed_dir(self) -> str:
        """The ``processed_dir`` given, else ``root/name/processed``."""
        if self._processed_dir is not None:
            return self._processed_dir
        return os.path.join(self.root, self.name, "processed")

    @property
    def raw_file_names(self) -> list[str]:
        """The ``.inter`` file and the ``*_feat.npy`` files found in :attr:`raw_dir`."""
        return [p.name for p in self._raw_paths]

    @property
    def processed_file_names(self) -> list[str]:
        """``data_<fingerprint of the raw files>.pt``; in a ``processed_dir`` of your choice, which
        may serve several datasets, ``<name>.data_<fingerprint>.pt``."""
        return [f"{self._cache_prefix}{self._key}.pt"]

    @property
    def _cache_prefix(self) -> str:
        """``data_``, or ``<name>.data_`` in a ``processed_dir`` of the caller's choice."""
        return "data_" if self._processed_dir is None else f"{self.name}.data_"

    def _process(self) -> None:
        """Build the graph unless a cache file exists (and caching is on, and no reload is forced).

        Replaces PyG's ``Dataset._process``, which unpickles ``pre_transform.pt`` with
        ``weights_only=False``.
        """
        if self.cache and not self.force_reload and all(os.path.isfile(p) for p in self.processed_paths):
            return
        self.process()

    def process(self) -> None:
        """Build the graph with :func:`load_mmrec` and cache it (best effort if not writable;
        not at all with ``cache=False``)."""
        data, notes = _load_recording(self.raw_dir, self._inter_path.stem)
        self._fresh = data
        self.processed_now = True
        target = Path(self.processed_paths[0])
        if not self.cache:
            return
        if self._processed_dir is None and not _writable(Path(self.raw_dir)):
            return  # read-only dataset folder: no cache, and nothing written there
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if self._processed_dir is not None:
                warnings.warn(f"processed_dir {target.parent}: cannot create it ({e}); no cache", stacklevel=2)
            return
        if not _writable(target.parent):
            if self._processed_dir is not None:
                warnings.warn(f"processed_dir {target.parent}: not writable; no cache", stacklevel=2)
            return
        try:
            atomic_write(target, lambda f: torch.save(_to_plain(data, self._key, notes), f))
        except OSError as e:
            warnings.warn(f"{target}: could not write the processed cache ({e})", stacklevel=2)
            return
        for old in target.parent.glob(f"{glob.escape(self._cache_prefix)}*.pt"):
            if old.name != target.name:
                try:
                    old.unlink()
                except OSError:
                    pass

    def _load_cache(self, path: Path) -> tuple[HeteroData, list[str]]:
        """The cached graph and its recorded warnings; a bad cache is reported and rebuilt instead
        (its warnings then already given: none returned)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return _from_plain(obj, path, self._key)
        except Exception as e:  # corrupt or foreign cache: rebuild it
            warnings.warn(f"{path}: unreadable processed cache ({e}); rebuilding it", stacklevel=3)
            self.process()
            data, self._fresh = self._fresh, None
            assert data is not None
            return data, []


class OpenedDataset(NamedTuple):
    """A dataset loaded by :func:`open_dataset`.

    Attributes:
        data: the dataset's graph (see :func:`load_mmrec`).
        cache_folder: its writable processed folder, where a run with
            ``knn_cache_dir="auto"`` keeps the KNN item graphs (``<folder>/knn_cache``); ``None``
            when it has none (a folder loaded by path without ``processed_dir``, ``cache=False``,
            or a read-only folder).
    """

    data: HeteroData
    cache_folder: Optional[Path]


def _opened(dataset: "MMRecDataset") -> OpenedDataset:
    """The dataset's graph, with its processed folder when that is writable."""
    data = dataset[0]
    folder = Path(dataset.processed_dir)
    writable = dataset.cache and folder.is_dir() and _writable(folder)
    return OpenedDataset(data, folder.resolve() if writable else None)


def load_dataset(
    name_or_path: str | Path,
    root: str | Path = "data",
    *,
    seed: int = 0,
    force_reload: bool = False,
    cache: bool = True,
    processed_dir: str | Path | None = None,
) -> HeteroData:
    """Load a dataset by name or path: the graph of :func:`open_dataset` (same arguments)."""
    return open_dataset(
        name_or_path, root, seed=seed, force_reload=force_reload, cache=cache, processed_dir=processed_dir
    ).data


def open_dataset(
    name_or_path: str | Path,
    root: str | Path = "data",
    *,
    seed: int = 0,
    force_reload: bool = False,
    cache: bool = True,
    processed_dir: str | Path | None = None,
) -> OpenedDataset:
    """Load a dataset by name or path, with the folder where its caches go.

    Resolution order:

    1. a synthetic profile: ``'demo'`` or ``'synthetic-<profile>'`` (e.g. ``'synthetic-baby'``,
       ``'synthetic-tiny'``; see :data:`~dhmrec_pyg.data.synthetic.PROFILES`) is generated with
       ``seed`` and written under ``root/<name>`` (once), then loaded;
    2. an existing folder path is loaded directly with :func:`load_mmrec` (no cache; with
       ``processed_dir``, cached there);
    3. a plain name with a folder ``root/<name>`` is loaded through :class:`MMRecDataset` (cached).

    A plain name that is both a folder in the working directory and ``root/<name>`` (two
    different folders) is an error naming both (:func:`check_unambiguous`): give a path.

    Where caches go: by default a named or synthetic dataset keeps its processed graph in
    ``root/<name>/processed`` (when writable), which is also returned as ``cache_folder``: runs
    with ``knn_cache_dir="auto"`` cache their KNN item graphs in its ``knn_cache``. With
    ``processed_dir=FOLDER`` both go to ``FOLDER`` instead and nothing is written next to the data;
    with ``cache=False`` no cache is read or written (and ``cache_folder`` is ``None``).

    Args:
        name_or_path: a synthetic profile name, a folder path, or a dataset name under ``root``.
        root: the folder holding named datasets.
        seed: seed of synthetic data.
        force_reload: rebuild the processed cache of a named dataset.
        cache: ``False``: no processed cache and no KNN cache folder (the raw files of a synthetic
            profile are still written under ``root``, once).
        processed_dir: the folder for the processed cache and the KNN caches; default
            ``root/<name>/processed``.

    Returns:
        An :class:`OpenedDataset` ``(data, cache_folder)``.

    Raises:
        DataError: if nothing matches (the message names the places looked at), if a plain name
            names two folders, or if a name that is not an existing folder contains a path
            separator or ``..``.
    """
    from .synthetic import dataset_name, materialise_synthetic, synthetic_profile_of

    text = str(name_or_path)
    root = Path(root)
    profile = synthetic_profile_of(text)
    options = {"force_reload": force_reload, "cache": cache, "processed_dir": processed_dir}
    if profile is not None:
        materialise_synthetic(profile, root, seed)
        return _opened(MMRecDataset(root, dataset_name(profile), **options))
    check_unambiguous(text, root)
    path = Path(name_or_path).expanduser()
    if text and path.is_dir():
        if processed_dir is None or not cache:
            return OpenedDataset(load_mmrec(path), None)
        return _opened(MMRecDataset(path.resolve().parent, path.resolve().name, **options))
    _check_plain_name(text)
    if (root / text).is_dir():
        return _opened(MMRecDataset(root, text, **options))
    raise DataError(
        f"dataset {text!r} not found: it is not a synthetic profile ('demo' or 'synthetic-<profile>'), "
        f"not an existing folder ({path.resolve()}), and {(root / text).resolve()} does not exist"
    )
