"""The small protocol between models and the trainer."""
from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Mapping, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.checks import at_least, check_types
from dhmrec_pyg.errors import ConfigError, DataError
from dhmrec_pyg.nn.graph import normalized_adjacency
from dhmrec_pyg.nn.knn import EXACT_MAX_ITEMS
from dhmrec_pyg.nn.pruning import degree_sensitive_prune
from dhmrec_pyg.nn.sparse import SparseAdjacency
from dhmrec_pyg.ranking import top_k
from dhmrec_pyg.schema import EDGE_TYPE, as_interaction_graph, modality_names

#: The interaction edge type (defined once, in :mod:`dhmrec_pyg.schema`).
EDGE = EDGE_TYPE


def _complement(value: float) -> float:
    """``1 - value``, rounded to 12 decimals so that ``0.8`` gives ``0.2``, not ``0.19999999999999996``."""
    return round(1.0 - float(value), 12)


#: Other names accepted for an option, each with the option it sets and how its value
#: converts: FREEDOM's reference names. ``dropout`` (share of the user-item edges pruned
#: each epoch) sets ``keep_ratio`` to ``1 - dropout``; ``image_weight`` (FREEDOM's
#: ``mm_image_weight``) is ``beta``. One name per knob is stored (``keep_ratio``, ``beta``);
#: configs (Python constructors of configs decorated with :func:`accepts_aliases`, YAML files,
#: ``--set``, ``--grid``, a run's ``config.yaml``) accept either.
OPTION_ALIASES: Dict[str, Tuple[str, Callable[[float], float]]] = {
    "dropout": ("keep_ratio", _complement),
    "image_weight": ("beta", float),
}


def resolve_aliases(config_class: type, values: Mapping[str, Any]) -> Dict[str, Any]:
    """``values`` with every name of :data:`OPTION_ALIASES` turned into the option it sets.

    Only aliases of an option ``config_class`` has, and that are not themselves options of it,
    are translated; other keys pass through unchanged.

    Raises:
        ValueError: an option is given under both of its names.
    """
    names = {f.name for f in dataclasses.fields(config_class)}
    out: Dict[str, Any] = {}
    for key, value in values.items():
        target, convert = OPTION_ALIASES.get(key, (None, None))
        if target is None or key in names or target not in names:
            out[key] = value
            continue
        if target in values:
            raise ValueError(f"{key!r} is another name of {target!r}: give only one of them")
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        out[target] = value if number is None else convert(number)  # a bad value fails in the config's checks
    return out


ConfigT = TypeVar("ConfigT", bound=type)


def accepts_aliases(config_class: ConfigT) -> ConfigT:
    """Class decorator: the dataclass ``config_class`` also takes the :data:`OPTION_ALIASES` names.

    ``FREEDOMConfig(dropout=0.9)`` is ``FREEDOMConfig(keep_ratio=0.1)``; the config stores
    the option's own name only.
    """
    init = config_class.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **resolve_aliases(config_class, kwargs))

    config_class.__init__ = __init__  # type: ignore[misc]
    return config_class


@dataclass
class ModelConfig:
    """Hyper-parameters shared by every model.

    Every config checks its fields when it is made (:func:`~dhmrec_pyg.checks.check_types`, then
    :meth:`check` for ranges), from Python as from YAML or ``--set``: a bad value is a
    :class:`~dhmrec_pyg.errors.ConfigError` naming ``Class.field`` and the value.

    Attributes:
        embedding_dim: size of user and item embeddings (the paper's ``d_k``).
        reg_weight: weight of the L2 penalty on the batch's embeddings.
    """

    embedding_dim: int = 64
    reg_weight: float = 1e-4

    def __post_init__(self) -> None:
        check_types(self)
        self.check()

    def check(self) -> None:
        """Range checks (subclasses extend them); types are checked before."""
        at_least(self, 1, "embedding_dim")
        at_least(self, 0, "reg_weight")


#: ``GraphConfig.recompute="auto"``: above this many items a DHMRec training step recomputes the
#: insides of its disentangler and fusion in the backward pass. At 250,000 items that saves 0.7
#: of 4.9 GB for 40% more time per step, not worth it; at a million items it is the difference
#: between 18.0 GB (at an 18 GiB cap) and 15.0 GB, for about a fifth more time
#: (``docs/guides/scaling.md``).
RECOMPUTE_AUTO_ITEMS = 500_000


@dataclass
class GraphConfig:
    """How a model's graphs are built and stored, and what a training step keeps in memory: not
    hyper-parameters of the model.

    Given to a model as ``Model(data, config, graph=GraphConfig(...))``; a run keeps it in the
    training options (:attr:`~dhmrec_pyg.training.TrainConfig.graph`, ``--set knn_cache_dir=none``).

    Attributes:
        knn_self_loops: an item is one of its own ``knn_k`` neighbours (FREEDOM's
            top-k over the full similarity matrix includes the item itself).
        knn_exact_max_items: above this many items the KNN search is approximate
            (:func:`~dhmrec_pyg.nn.knn_graph`).
        knn_cache_dir: folder caching KNN graphs; ``""`` or ``"none"``: no cache; ``"auto"``: the
            processed folder of the data set a run loads by name (``<folder>/knn_cache``), and no
            cache for a model built directly from a graph.
        sparse_layout: ``"csr"`` or ``"coo"`` storage of the adjacencies.
        recompute: activation checkpointing, for DHMRec (the other models ignore it): ``True``
            keeps only the outputs of its disentangler (1)-(6) and of its fusion (15)-(19) during a
            training step and recomputes their insides in the backward pass (less memory, more
            time, the same losses and gradients); ``False`` keeps everything; ``"auto"`` (the
            default) recomputes above :data:`RECOMPUTE_AUTO_ITEMS` items.
    """

    knn_self_loops: bool = True
    knn_exact_max_items: int = EXACT_MAX_ITEMS
    knn_cache_dir: str = "auto"
    sparse_layout: Literal["csr", "coo"] = "csr"
    recompute: Union[bool, Literal["auto"]] = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        at_least(self, 0, "knn_exact_max_items")

    def recomputes(self, num_items: int) -> bool:
        """Whether a training step on ``num_items`` items recomputes in its backward pass what
        ``recompute`` names."""
        if self.recompute == "auto":
            return num_items > RECOMPUTE_AUTO_ITEMS
        return bool(self.recompute)

    def cache_path(self) -> Optional[Path]:
        """The KNN cache folder, or ``None`` for no cache (``""``, ``"none"``, or ``"auto"`` left
        unresolved: :meth:`resolved` turns ``"auto"`` into a folder)."""
        value = self.knn_cache_dir.strip()
        if value.lower() in ("", "none", "auto"):
            return None
        return Path(value)

    def resolved(self, dataset_folder: Optional[Path]) -> "GraphConfig":
        """A copy with ``knn_cache_dir="auto"`` replaced by ``dataset_folder/knn_cache`` (no
        cache when ``dataset_folder`` is ``None``)."""
        if self.knn_cache_dir != "auto":
            return self
        folder = "" if dataset_folder is None else str(Path(dataset_folder) / "knn_cache")
        return dataclasses.replace(self, knn_cache_dir=folder)


@dataclass
class ItemGraphConfig(ModelConfig):
    """Options shared by the models that propagate over user-item and KNN item-item graphs
    (DHMRec, FREEDOM). How the graphs are built and stored is :class:`GraphConfig`.

    Attributes:
        num_ui_layers: propagation hops over the user-item graph (FREEDOM's 2).
        num_ii_layers: hops over the item-item graphs (FREEDOM's 1).
        knn_k: neighbours per item in the item-item KNN graphs (10).
        visual_modality: which modality is visual-like (weighted by ``beta`` /
            ``image_weight`` in the mixed graph); empty: guessed by name.
    """

    num_ui_layers: int = 2
    num_ii_layers: int = 1
    knn_k: int = 10
    visual_modality: str = ""

    def check(self) -> None:
        """:meth:`ModelConfig.check`, and at least one neighbour, no negative hop count."""
        super().check()
        at_least(self, 1, "knn_k")
        at_least(self, 0, "num_ui_layers", "num_ii_layers")

    def check_keep_ratio_and_beta(self) -> None:
        """``keep_ratio`` in (0, 1] and ``beta`` in [0, 1], the errors naming FREEDOM's names too
        (``dropout = 1 - keep_ratio``, ``image_weight = beta``)."""
        name, keep, beta = type(self).__name__, getattr(self, "keep_ratio"), getattr(self, "beta")
        if not 0.0 < keep <= 1.0:
            raise ConfigError(f"{name}.keep_ratio must be in (0, 1] (dropout = 1 - keep_ratio in [0, 1)), got {keep!r}")
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(f"{name}.beta (image_weight) must be in [0, 1], got {beta!r}")


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss, equation (24) of the DHMRec paper.

    .. math::
        \mathcal{L}_{BPR} = -\frac{1}{|B|} \sum_{(u,i,j) \in B}
        \ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})

    Averaged over the batch (MMRec's convention; the paper writes a sum, which
    only rescales the learning rate). Computed with ``logsigmoid`` so large
    score gaps cannot produce ``log(0)``.
    """
    return -torch.nn.functional.logsigmoid(pos_scores - neg_scores).mean()


def bpr_loss_from_embeddings(users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
    r""":func:`bpr_loss` of inner-product scores: :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Args:
        users: ``[B, d]`` user embeddings of the batch.
        pos_items: ``[B, d]`` embeddings of their positive items.
        neg_items: ``[B, d]`` embeddings of their negative items.
    """
    return bpr_loss((users * pos_items).sum(-1), (users * neg_items).sum(-1))


def l2_reg(*embeddings: Tensor) -> Tensor:
    r"""Squared L2 norm of the given batch embeddings divided by the batch size.

    :math:`\frac{1}{|B|} \sum_t \lVert \mathbf{E}_t \rVert_2^2`, the
    regulariser of LightGCN and the reading of the :math:`\gamma_{reg}` term
    of equation (25) that this library takes.
    """
    batch = embeddings[0].size(0)
    return sum(e.pow(2).sum() for e in embeddings) / max(batch, 1)


def item_modalities(data: HeteroData, model: str) -> List[str]:
    """Sorted modality names of ``data`` (item attributes ``x_<modality>``), checked for a
    multimodal model: at least one modality, each a finite ``[num_items, d_m]`` matrix.

    Item attributes that look like features but are not named ``x_<modality>`` (a plain ``x``,
    ``image``...) are not used: a warning names them.

    Raises:
        DataError: (a ``ValueError``) naming the model and the dataset, when there are no
            features, or naming the modality when a feature matrix has the wrong shape or holds
            NaN or infinite values (with the first such item row).
    """
    names = modality_names(data)
    num_items = int(data["item"].num_nodes)
    ignored = [key for key, value in data["item"].items() if not key.startswith("x_")
               and isinstance(value, Tensor) and value.dim() == 2 and value.size(0) == num_items
               and value.is_floating_point()]
    if ignored and names:
        warnings.warn(f"item attributes {ignored} are not used by {model!r}: item features must be named "
                      f"x_<modality> (found {['x_' + n for n in names]})", stacklevel=3)
    if not names:
        dataset = getattr(data, "name", "") or "<unnamed>"
        hint = f" (item attributes {ignored} are not: rename them x_<modality>, e.g. x_image)" if ignored else ""
        raise DataError(
            f"model {model!r} needs item features, but dataset {dataset!r} has none "
            f"(no *_feat.npy files / item attributes x_<modality>{hint}); use 'lightgcn' or 'bpr' instead"
        )
    for m in names:
        x = data["item"][f"x_{m}"]
        if x.dim() != 2 or x.size(0) != num_items:
            raise DataError(f"item feature x_{m} must have shape [{num_items}, d_m], got {tuple(x.shape)}")
        finite = torch.isfinite(x).all(dim=1)
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0, 0])
            raise DataError(f"item feature x_{m} holds NaN or infinite values: {int((~finite).sum())} item rows, "
                            f"the first is item {row}")
    return names


class TopK(NamedTuple):
    """Top-``k`` recommendations of :meth:`Recommender.recommend`, best first.

    Attributes:
        users: ``[B]`` the user ids asked for.
        items: ``[B, w]`` item ids, never one of the user's training items; ``w = min(k, number
            of items)``. A user with fewer than ``k`` items outside its training interactions has
            all of them, then :data:`~dhmrec_pyg.ranking.NO_ITEM` (-1) to the end of its row.
        scores: ``[B, w]`` their scores (equation (23)); ``-inf`` where the item is ``NO_ITEM``.
    """

    users: Tensor
    items: Tensor
    scores: Tensor


class _ChecksGraph(type):
    """Metaclass of :class:`Recommender`: checks the graph before any model's ``__init__`` sees it.

    ``Model(data, config, edge_type=..., user=..., item=...)`` passes ``data`` through
    :func:`~dhmrec_pyg.schema.as_interaction_graph`, so every model (subclasses included) accepts a
    graph with its own names and rejects a malformed one with a message naming what was expected
    and what was found.
    """

    def __call__(cls, data: HeteroData, *args: object, edge_type: object = None, user: Optional[str] = None,
                 item: Optional[str] = None, **kwargs: object) -> "Recommender":
        data = as_interaction_graph(data, edge_type, user=user, item=item)  # type: ignore[arg-type]
        return super().__call__(data, *args, **kwargs)


class Recommender(nn.Module, metaclass=_ChecksGraph):
    """Base class of every model the trainer can fit.

    A model is built from the training graph (``data``: a ``HeteroData``
    with ``user`` and ``item`` nodes and ``("user", "interacts", "item")``
    training edges, plus item features for multimodal models) and a config
    dataclass. A graph with other names is accepted with ``edge_type=`` (and
    ``user=`` / ``item=``) keywords: ``LightGCN(data, config,
    edge_type=("user", "rates", "item"))``; every constructor checks the graph
    with :func:`~dhmrec_pyg.schema.as_interaction_graph` first. The trainer only calls:

    - :meth:`on_epoch_start` once before every training epoch,
    - :meth:`loss` for every mini-batch of BPR triplets,
    - :meth:`embeddings` (under ``torch.no_grad`` and ``eval()``) to score all
      items for evaluation and recommendation,
    - :meth:`diagnostics` (same conditions) once per epoch, for ``history.csv``.

    For inference, :meth:`recommend` ranks all items for given users, leaving
    out their training items, which every model keeps (``train_edge_index``, a
    non-persistent buffer: it moves with ``.to(device)`` and is not saved in
    checkpoints, since it is rebuilt from the data); :meth:`embeddings` gives the
    final embeddings to export.
    """

    config_class = ModelConfig

    def __init__(self, data: HeteroData, config: ModelConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got a {type(config).__name__}"
            )
        if graph is not None and not isinstance(graph, GraphConfig):
            raise ConfigError(f"{type(self).__name__}: graph must be a GraphConfig, got {graph!r}")
        self.config = config
        #: How the model's graphs are built and stored (:class:`GraphConfig`).
        self.graph_config = graph if graph is not None else GraphConfig()
        self.num_users = int(data["user"].num_nodes)
        self.num_items = int(data["item"].num_nodes)
        self.register_buffer("train_edge_index", data[EDGE].edge_index, persistent=False)

    def register_adjacency(self, name: str, adj: Tensor, symmetric: bool = False) -> None:
        """Keep a sparse adjacency with the model, under ``name``.

        It moves with the model (``.to(device)``) but is not saved in checkpoints:
        it is rebuilt from the data. Registering a name again replaces the graph
        (e.g. a pruned graph resampled every epoch).

        Args:
            name: the attribute name.
            adj: a ``torch.sparse`` matrix (COO or CSR).
            symmetric: ``adj`` equals its transpose (a normalised user-item
                adjacency). It is then kept as a
                :class:`~dhmrec_pyg.nn.SparseAdjacency`, which
                :class:`~dhmrec_pyg.nn.LightGCNConv` multiplies without a transpose
                in the backward pass and ``torch.compile`` traces; otherwise as a
                ``torch.sparse`` non-persistent buffer.
        """
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        if symmetric:
            self.add_module(name, SparseAdjacency(adj, symmetric=True))
        else:
            self.register_buffer(name, adj, persistent=False)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Hook run before each training epoch (e.g. resample a pruned graph)."""

    def resample_pruned_graph(
        self, edge_index: Tensor, keep_ratio: float, generator: torch.Generator,
    ) -> Optional[Tensor]:
        """Draw this epoch's degree-pruned user-item graph and keep it as ``adj_pruned``.

        FREEDOM's denoising, which DHMRec's ID view shares: keep ``keep_ratio`` of the
        training edges (:func:`~dhmrec_pyg.nn.degree_sensitive_prune`), re-normalise the kept
        graph (:func:`~dhmrec_pyg.nn.normalized_adjacency`) and register it, symmetric, on the
        model's device. Nothing is drawn when ``keep_ratio`` >= 1 (no pruning).

        Args:
            edge_index: ``[2, E]`` training interactions (CPU: the draw is the same on every device).
            keep_ratio: share of the edges kept, in ``(0, 1]``.
            generator: the epoch's random source.

        Returns:
            The kept ``[2, E']`` edges, or ``None`` when nothing was drawn.
        """
        if keep_ratio >= 1.0:
            return None
        kept = degree_sensitive_prune(edge_index, self.num_users, self.num_items, keep_ratio, generator)
        adj = normalized_adjacency(kept, self.num_users, self.num_items, layout=self.graph_config.sparse_layout)
        device = next(self.parameters(), self.train_edge_index).device
        self.register_adjacency("adj_pruned", adj.to(device), symmetric=True)
        return kept

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        """Final user and item embeddings, ``([U, d], [I, d])``, for scoring and export.

        Every model of the library scores by their inner product (equation (23);
        :meth:`score`), so the two matrices can go to any inner-product search
        index. Call it in ``eval()`` mode under ``torch.no_grad()``: training mode
        may use the training-time graph (e.g. a pruned one).

        The default returns ``forward().user`` and ``forward().item``, for models whose
        :meth:`forward` returns an output with those two fields (DHMRec, FREEDOM, LGMRec).
        """
        out = self.forward()
        return out.user, out.item

    @torch.no_grad()
    def recommend(
        self, users: Union[Tensor, Sequence[int], None] = None, k: int = 20, batch_size: int = 4096,
    ) -> TopK:
        """Top-``k`` items for each of ``users``, leaving out the user's training items.

        Ranks all items by :meth:`score` of the :meth:`embeddings` (in ``eval()``
        mode, in which the model is left), with the training interactions the
        model was built from (``train_edge_index``) masked out. The ranking is
        :func:`dhmrec_pyg.ranking.top_k`, which ``dhmrec recommend`` runs too
        (:func:`dhmrec_pyg.recommend.recommend`).

        Args:
            users: user ids (a tensor or a sequence); default: all users.
            k: items per user.
            batch_size: users scored at once.

        Returns:
            A :class:`TopK` of CPU tensors: ``users [B]``, ``items [B, w]``, ``scores [B, w]`` with
            ``w = min(k, number of items)``. When a user has fewer than ``k`` items outside its
            training interactions (``k`` near or above the number of items), its row holds all of
            them, best first, then item :data:`~dhmrec_pyg.ranking.NO_ITEM` (-1) with score
            ``-inf``; a :class:`~dhmrec_pyg.ranking.ShortListWarning` says how many users that
            concerns. A training item is never returned.

        Raises:
            ValueError: ``k`` < 1, or a user id out of range.
        """
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        self.eval()
        user_emb, item_emb = self.embeddings()
        score_fn = None if type(self).score is Recommender.score else self.score
        out = top_k(user_emb, item_emb, self.train_edge_index, k, users, batch_size, score_fn=score_fn)
        return TopK(*(torch.from_numpy(a) for a in out))

    def diagnostics(self, generator: Optional[torch.Generator] = None) -> Dict[str, float]:
        """Named health readings of the current parameters, recorded per epoch.

        The trainer calls this after each validation pass (in ``eval()`` mode,
        without gradients) and writes every entry as a ``diag_<name>`` column of
        ``history.csv``; ``dhmrec plot`` draws them. The base model has none.
        """
        return {}

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """Loss terms for a batch of triplets; the key ``"loss"`` is their weighted total."""
        raise NotImplementedError

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        """Preference scores of a batch of users for all items (equation (23))."""
        return user_emb @ item_emb.t()
