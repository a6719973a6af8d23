"""The interaction-graph schema: node and edge type names, where the splits live, and the check at
the door (:func:`as_interaction_graph`).

This module is the one definition of the schema; :mod:`dhmrec_pyg.data` re-exports it and the
models import it from here (it depends on nothing else in the library). The **canonical form**,
which :func:`~dhmrec_pyg.data.load_dataset` returns and every model, the trainer and the evaluators
read, is a :class:`~torch_geometric.data.HeteroData` with

* node types ``'user'`` and ``'item'`` (their ``num_nodes`` set);
* ``data['user', 'interacts', 'item'].edge_index``: the training interactions, int64 ``[2, E]``
  (row 0 user ids, row 1 item ids);
* ``data['user', 'interacts_val', 'item'].edge_index`` and
  ``data['user', 'interacts_test', 'item'].edge_index``: the validation and test interactions, as
  edge types of their own, so that PyG's transforms and loaders keep them consistent with the
  nodes: ``to_homogeneous()`` offsets them like every edge (its ``edge_type`` /
  ``_edge_type_names`` tell the splits apart) and ``LinkNeighborLoader`` relabels them. They are
  held-out edges: do not pass messages over them (:func:`training_graph` drops them);
* item attributes ``x_<modality>``, one ``[num_items, d_m]`` matrix per modality.

For code written against the earlier layout, the training edge store also carries
``val_edge_index`` and ``test_edge_index`` (the same tensors as the split edge types). Transforms
do not update these two attributes; read the splits with :func:`split_edge_index`.

Your own names are accepted at every door (loading helpers, model constructors, ``recommend``)
with ``edge_type=`` (and ``user=`` / ``item=`` node types): :func:`as_interaction_graph` checks the
graph up front and returns the canonical form, renamed when needed.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from dhmrec_pyg.errors import DataError

__all__ = [
    "EDGE_TYPE",
    "ITEM",
    "RELATION",
    "SPLITS",
    "TEST_EDGE_TYPE",
    "USER",
    "VAL_EDGE_TYPE",
    "as_interaction_graph",
    "check_edge_index",
    "modality_names",
    "split_edge_index",
    "split_edge_type",
    "training_graph",
]

EdgeType = Tuple[str, str, str]

#: Node type of users.
USER: str = "user"
#: Node type of items.
ITEM: str = "item"
#: Relation name of the training interactions.
RELATION: str = "interacts"
#: The edge type of user-item training interactions in every canonical graph.
EDGE_TYPE: EdgeType = (USER, RELATION, ITEM)
#: The splits of a dataset, in order.
SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: The held-out splits, stored as edge types of their own.
_HELD_OUT: Tuple[str, ...] = ("val", "test")
#: Prefix of the item attributes holding modality features (``x_<modality>``).
FEATURE_PREFIX: str = "x_"


def modality_names(data: HeteroData) -> List[str]:
    """Sorted modality names of ``data``: its item attributes ``x_<modality>``, prefix stripped.

    The one place the feature naming is read (data loading, item graphs, models); a graph
    without an ``item`` node type has none.
    """
    if ITEM not in data.node_types:
        return []
    return sorted(key[len(FEATURE_PREFIX):] for key in data[ITEM].keys() if key.startswith(FEATURE_PREFIX))


def split_edge_type(split: str, edge_type: Sequence[str] = EDGE_TYPE) -> EdgeType:
    """The edge type holding ``split``'s interactions for the interaction type ``edge_type``.

    ``'train'`` is ``edge_type`` itself; ``'val'`` and ``'test'`` get the relation name with a
    ``_val`` / ``_test`` suffix: ``('user', 'interacts_val', 'item')`` for the canonical schema,
    ``('customer', 'rates_test', 'product')`` for ``edge_type=('customer', 'rates', 'product')``.

    Raises:
        DataError: for a split other than ``'train'``, ``'val'`` or ``'test'``.
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    src, rel, dst = edge_type
    return (src, rel, dst) if split == "train" else (src, f"{rel}_{split}", dst)


#: Validation interactions of the canonical schema.
VAL_EDGE_TYPE: EdgeType = split_edge_type("val")
#: Test interactions of the canonical schema.
TEST_EDGE_TYPE: EdgeType = split_edge_type("test")


def _legacy_attr(split: str) -> str:
    return f"{split}_edge_index"


def _edge_index_of(data: HeteroData, edge_type: EdgeType) -> Optional[Tensor]:
    if edge_type not in data.edge_types:
        return None
    return getattr(data[edge_type], "edge_index", None)


def split_edge_index(data: HeteroData, split: str, missing_ok: bool = False) -> Optional[Tensor]:
    """The ``[2, E]`` (user, item) interactions of ``split`` (``'train'``, ``'val'`` or ``'test'``)
    of a canonical graph.

    Reads the split's edge type (:func:`split_edge_type`), or, for a graph in the earlier layout,
    the ``val_edge_index`` / ``test_edge_index`` attribute of the training edge store.

    Args:
        data: a graph in the canonical form (see :func:`as_interaction_graph`).
        split: ``'train'``, ``'val'`` or ``'test'``.
        missing_ok: return ``None`` instead of raising when the split is absent.

    Raises:
        DataError: when the split is absent (naming where it was looked for) and not ``missing_ok``.
    """
    own = split_edge_type(split)
    ei = _edge_index_of(data, own)
    if ei is None and split != "train" and EDGE_TYPE in data.edge_types:
        ei = getattr(data[EDGE_TYPE], _legacy_attr(split), None)
    if ei is None and not missing_ok:
        where = f"data[{own!r}].edge_index"
        if split != "train":
            where += f" or data[{EDGE_TYPE!r}].{_legacy_attr(split)}"
        raise DataError(f"no {split} interactions: expected {where}; found edge types {data.edge_types}")
    return ei


def _resolve_edge_type(
    edge_type: Union[None, str, Sequence[str]], user: Optional[str], item: Optional[str]
) -> EdgeType:
    if edge_type is None:
        return (user or USER, RELATION, item or ITEM)
    if isinstance(edge_type, str):
        return (user or USER, edge_type, item or ITEM)
    parts = tuple(edge_type)
    if len(parts) != 3 or not all(isinstance(p, str) and p for p in parts):
        raise DataError(
            f"edge_type={edge_type!r}: expected a (source node type, relation, destination node type) "
            "triple of names, e.g. ('user', 'rates', 'item'), or a relation name"
        )
    for arg, value, pos in (("user", user, 0), ("item", item, 2)):
        if value is not None and value != parts[pos]:
            raise DataError(f"{arg}={value!r} contradicts edge_type={parts!r} (its node type is {parts[pos]!r})")
    return parts  # type: ignore[return-value]


def _describe(data: HeteroData) -> str:
    edges = [f"{et} ({', '.join(sorted(data[et].keys())) or 'no attributes'})" for et in data.edge_types]
    return f"found node types {data.node_types} and edge types [{'; '.join(edges)}]"


def _num_nodes(data: HeteroData, node_type: str, role: str) -> int:
    n = data[node_type].num_nodes
    if n is None:
        raise DataError(
            f"data[{node_type!r}].num_nodes is not set: the {role} node type needs a node count "
            f"(set data[{node_type!r}].num_nodes = N)"
        )
    return int(n)


def check_edge_index(edge_index: object, where: str, num_users: int, num_items: int,
                     names: Tuple[str, str] = (USER, ITEM)) -> Tensor:
    """Check a ``[2, E]`` (user, item) index: integer ids, users ``< num_users``, items ``< num_items``.

    Args:
        edge_index: the tensor to check.
        where: how the message names it (e.g. ``"data[('user', 'rates', 'item')].edge_index"``).
        num_users: number of users.
        num_items: number of items.
        names: the node type names of rows 0 and 1, for the message.

    Returns:
        ``edge_index`` itself.

    Raises:
        DataError: naming ``where``, the row and the first offending id and its column.
    """
    if not isinstance(edge_index, Tensor):
        raise DataError(f"{where}: expected a [2, E] integer tensor, found {type(edge_index).__name__}")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise DataError(f"{where}: expected integer ids, found dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise DataError(
            f"{where}: expected shape [2, E] (row 0 {names[0]} ids, row 1 {names[1]} ids), "
            f"found {tuple(edge_index.shape)}"
        )
    for row, (name, n) in enumerate(zip(names, (num_users, num_items))):
        ids = edge_index[row]
        if ids.numel() == 0:
            continue
        bad = ((ids < 0) | (ids >= n)).nonzero()
        if bad.numel():
            col = int(bad[0, 0])
            raise DataError(
                f"{where}: {name} id {int(ids[col])} (row {row}, column {col}) is out of range: "
                f"{n} {name} nodes, ids 0..{n - 1}"
            )
    return edge_index


def as_interaction_graph(
    data: HeteroData,
    edge_type: Union[None, str, Sequence[str]] = None,
    *,
    user: Optional[str] = None,
    item: Optional[str] = None,
    require_splits: bool = False,
) -> HeteroData:
    """Check a user-item graph and return it in the library's canonical form.

    Every door of the library where a :class:`HeteroData` enters (model constructors,
    :func:`~dhmrec_pyg.training.run.run_once`, :func:`~dhmrec_pyg.recommend.recommend`,
    :func:`~dhmrec_pyg.data.write_mmrec`) calls this, so a graph with your own names works
    everywhere and a malformed one fails at once with a message that lists what was expected and
    what was found.

    Validation and test interactions are read from the split edge types of ``edge_type``
    (``(user, '<relation>_val', item)``, ``(user, '<relation>_test', item)``) or, in the earlier
    layout, from ``val_edge_index`` / ``test_edge_index`` on the interaction edge store.

    Args:
        data: the graph.
        edge_type: the interaction edge type, ``(user node type, relation, item node type)``, or
            just the relation name; default ``('user', 'interacts', 'item')`` (with ``user`` /
            ``item`` as node types when given).
        user: the user node type (default: ``edge_type[0]``, else ``'user'``).
        item: the item node type (default: ``edge_type[2]``, else ``'item'``).
        require_splits: also require validation and test interactions (for training).

    Returns:
        ``data`` itself when it is already canonical; otherwise a shallow copy (tensors shared)
        with node types ``'user'`` / ``'item'``, the interaction type ``('user', 'interacts',
        'item')``, the split edge types, and ids as int64. Other node and edge types and the
        global attributes (``name``, ...) are kept.

    Raises:
        DataError: a missing node or edge type (the message lists those found), a malformed
            ``edge_index``, an id out of range (naming the edge type, node type and id),
            disagreeing copies of a split, or a missing split with ``require_splits``.
    """
    if not isinstance(data, HeteroData):
        raise DataError(
            f"expected a torch_geometric.data.HeteroData with {USER!r} and {ITEM!r} nodes and "
            f"{EDGE_TYPE!r} edges, found {type(data).__name__}"
        )
    src, rel, dst = _resolve_edge_type(edge_type, user, item)
    given = (src, rel, dst)
    if src == dst:
        raise DataError(f"edge_type={given!r}: users and items must be different node types")
    missing = [t for t in (src, dst) if t not in data.node_types]
    if missing or _edge_index_of(data, given) is None:
        what = f"node types {missing}" if missing else f"edge type {given!r} with an edge_index"
        raise DataError(
            f"expected interactions as data[{given!r}].edge_index between node types {src!r} (users) "
            f"and {dst!r} (items); missing {what}; {_describe(data)}. "
            "Name your schema with edge_type=(user type, relation, item type)"
        )
    num_users, num_items = _num_nodes(data, src, "user"), _num_nodes(data, dst, "item")
    store = data[given]

    def check(ei: object, name: str) -> Tensor:
        return check_edge_index(ei, name, num_users, num_items, (src, dst))

    train = check(store.edge_index, f"data[{given!r}].edge_index")
    splits: Dict[str, Optional[Tensor]] = {}
    complete = train.dtype == torch.long
    for split in _HELD_OUT:
        own = split_edge_type(split, given)
        new = _edge_index_of(data, own)
        old = getattr(store, _legacy_attr(split), None)
        if new is not None:
            check(new, f"data[{own!r}].edge_index")
        if old is not None:
            check(old, f"data[{given!r}].{_legacy_attr(split)}")
        if new is not None and old is not None and new is not old:
            if new.shape != old.shape or not torch.equal(new.cpu(), old.cpu()):
                raise DataError(
                    f"the {split} interactions disagree: data[{own!r}].edge_index {tuple(new.shape)} and "
                    f"data[{given!r}].{_legacy_attr(split)} {tuple(old.shape)} (the latter is the earlier "
                    "layout, which transforms such as to_homogeneous() or LinkNeighborLoader do not "
                    f"update); delete it or make it equal"
                )
        splits[split] = new if new is not None else old
        if splits[split] is None:
            if require_splits:
                raise DataError(
                    f"no {split} interactions: expected data[{own!r}].edge_index (or "
                    f"data[{given!r}].{_legacy_attr(split)}); {_describe(data)}"
                )
            continue
        complete = complete and new is not None and old is not None and splits[split].dtype == torch.long
    _check_not_empty(train, num_users, num_items, given)
    if require_splits:
        for split, ei in splits.items():
            _check_held_out_disjoint(train, ei, split, num_items)  # type: ignore[arg-type]
    if given == EDGE_TYPE and complete:
        return data
    out = copy.copy(data)
    if given != EDGE_TYPE:
        _rename(out, given)
    out[EDGE_TYPE].edge_index = train.long()
    for split, ei in splits.items():
        if ei is not None:
            ei = ei.long()
            out[split_edge_type(split)].edge_index = ei
            out[EDGE_TYPE][_legacy_attr(split)] = ei
    return out


def _check_not_empty(train: Tensor, num_users: int, num_items: int, given: EdgeType) -> None:
    """Refuse a graph without users, items or training interactions (nothing to train or rank)."""
    if num_users == 0 or num_items == 0 or train.size(1) == 0:
        raise DataError(
            f"the graph has {num_users} users, {num_items} items and {train.size(1)} training "
            f"interactions in data[{given!r}].edge_index: a model needs at least one of each"
        )


def _check_held_out_disjoint(train: Tensor, held_out: Tensor, split: str, num_items: int) -> None:
    """Refuse validation or test pairs that are also training pairs: training items are masked
    when ranking, so such a pair could never be found and would lower the metrics silently."""
    if held_out.numel() == 0:
        return
    train_keys = train[0].long() * num_items + train[1].long()
    keys = held_out[0].long() * num_items + held_out[1].long()
    shared = torch.isin(keys, train_keys)
    count = int(shared.sum())
    if count:
        first = int(shared.nonzero()[0, 0])
        user, item = int(held_out[0, first]), int(held_out[1, first])
        raise DataError(
            f"{count} of the {keys.numel()} {split} interactions are also training interactions "
            f"(e.g. user {user}, item {item}); training items are never ranked, so these could "
            f"never be found: remove them from the {split} split"
        )


def _rename(out: HeteroData, given: EdgeType) -> None:
    """Rename ``given``'s node types and relation (and its split types) to the canonical ones, in place."""
    src, rel, dst = given
    for old, new in ((src, USER), (dst, ITEM)):
        if old != new and new in out.node_types:
            raise DataError(
                f"edge_type={given!r}: cannot rename node type {old!r} to {new!r}, the graph already has "
                f"a node type {new!r}; found node types {out.node_types}"
            )
    if src != USER:
        out.rename(src, USER)
    if dst != ITEM:
        out.rename(dst, ITEM)
    if rel == RELATION:
        return
    for split in SPLITS:
        old_type = split_edge_type(split, (USER, rel, ITEM))
        new_type = split_edge_type(split)
        if old_type not in out.edge_types:
            continue
        if new_type in out.edge_types:
            raise DataError(
                f"edge_type={given!r}: cannot rename relation {old_type[1]!r} to {new_type[1]!r}, the graph "
                f"already has edge type {new_type!r}"
            )
        for key, value in out[old_type].items():
            out[new_type][key] = value
        del out[old_type]


def training_graph(data: HeteroData, **schema: object) -> HeteroData:
    """The graph to pass messages over: ``data`` in canonical form without its held-out splits.

    A shallow copy without the validation and test edge types (and without the earlier layout's
    ``val_edge_index`` / ``test_edge_index``), for stock PyG: ``to_hetero(model,
    training_graph(data).metadata())``, or ``LinkNeighborLoader(training_graph(data), [10, 10],
    edge_label_index=(EDGE_TYPE, split_edge_index(data, 'val')))``.

    Args:
        data: a graph; ``schema`` (``edge_type=``, ``user=``, ``item=``) as in
            :func:`as_interaction_graph`.
    """
    canonical = as_interaction_graph(data, **schema)  # type: ignore[arg-type]
    out = copy.copy(canonical)
    for split in _HELD_OUT:
        if split_edge_type(split) in out.edge_types:
            del out[split_edge_type(split)]
        if _legacy_attr(split) in out[EDGE_TYPE]:
            del out[EDGE_TYPE][_legacy_attr(split)]
    return out
