"""The report of :func:`~dhmrec_pyg.data.prepare.prepare_dataset`: what was read, dropped, kept and written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModalityReport", "PrepareReport"]


@dataclass
class ModalityReport:
    """What :func:`prepare_dataset` did with one modality's features.

    Attributes:
        source: the feature file (or the text file, for an encoded text modality).
        dim: feature width.
        rows_read: feature rows in the file.
        rows_used: rows that became an item's features.
        rows_ignored: rows for IDs not kept (not in the interactions and cold items dropped, or
            removed by the k-core filter).
        filled: kept items without a row in this file, given the fill row.
        fill: ``'mean'`` or ``'zeros'``.
        filled_examples: up to five original IDs of filled items.
    """

    source: str
    dim: int
    rows_read: int
    rows_used: int
    rows_ignored: int
    filled: int
    fill: str
    filled_examples: list[str] = field(default_factory=list)


@dataclass
class PrepareReport:
    """Counts describing one run of :func:`prepare_dataset`; ``str(report)`` is a readable summary.

    Attributes:
        source: the interaction file read.
        out_folder: the folder written.
        name: the dataset name (the ``.inter`` file's stem).
        rows_read: data rows in the interaction file.
        rows_missing_id: rows dropped for an empty user or item ID.
        duplicates_dropped: repeated ``(user, item)`` rows dropped.
        k_core: the ``k`` of the k-core filter (0: none).
        k_core_rounds: filtering rounds until stable.
        k_core_dropped_interactions: interactions removed by the k-core filter.
        k_core_dropped_users: users removed by the k-core filter.
        k_core_dropped_items: items removed by the k-core filter.
        users: users in the output.
        items: items in the output (``warm_items + cold_items``).
        warm_items: items with at least one interaction.
        cold_items: items kept for their features only (no interaction).
        cold_items_dropped: items with features but no interaction that were left out
            (``keep_cold_items=False``).
        interactions: interactions in the output.
        split: ``'mmrec'`` or ``'chronological'``.
        seed: seed of the ``'mmrec'`` split.
        train: interactions with ``x_label`` 0.
        valid: interactions with ``x_label`` 1.
        test: interactions with ``x_label`` 2.
        modalities: modality name -> :class:`ModalityReport`.
        files: the files written, relative to ``out_folder``.
    """

    source: str
    out_folder: str
    name: str
    rows_read: int
    rows_missing_id: int
    duplicates_dropped: int
    k_core: int
    k_core_rounds: int
    k_core_dropped_interactions: int
    k_core_dropped_users: int
    k_core_dropped_items: int
    users: int
    items: int
    warm_items: int
    cold_items: int
    cold_items_dropped: int
    interactions: int
    split: str
    seed: int
    train: int
    valid: int
    test: int
    modalities: dict[str, ModalityReport] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-serialisable data."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def n(count: int, noun: str) -> str:
            """``count`` and ``noun``, pluralised."""
            return f"{count:,} {noun}" + ("" if count == 1 else "s")

        lines = [f"Prepared {self.out_folder} from {self.source}"]
        dropped = []
        if self.rows_missing_id:
            dropped.append(f"{n(self.rows_missing_id, 'row')} with an empty user or item ID")
        if self.duplicates_dropped:
            dropped.append(f"{n(self.duplicates_dropped, 'duplicate (user, item) pair')}")
        lines.append(
            f"  read {self.rows_read:,} interaction rows"
            + (f"; dropped {' and '.join(dropped)}" if dropped else "; nothing dropped")
        )
        if self.k_core > 0:
            lines.append(
                f"  {self.k_core}-core filter ({n(self.k_core_rounds, 'round')}): dropped "
                f"{n(self.k_core_dropped_interactions, 'interaction')}, {n(self.k_core_dropped_users, 'user')}, "
                f"{n(self.k_core_dropped_items, 'item')}"
            )
        cold = f", {self.cold_items:,} cold (features only, no interaction)" if self.cold_items else ""
        lines.append(
            f"  kept {self.interactions:,} interactions of {self.users:,} users on {self.items:,} items "
            f"({self.warm_items:,} with interactions{cold})"
        )
        if self.cold_items_dropped:
            lines.append(f"  left out {n(self.cold_items_dropped, 'item')} with features but no interaction")
        how = f"MMRec's random per-user rule, seed {self.seed}" if self.split == "mmrec" else "chronological per user"
        lines.append(f"  split ({how}): {self.train:,} train / {self.valid:,} valid / {self.test:,} test")
        for m, r in sorted(self.modalities.items()):
            text = f"  {m}: {r.dim}-d from {r.source}; {r.rows_used:,} rows used"
            if r.filled:
                ex = ", ".join(repr(e) for e in r.filled_examples)
                text += f"; {n(r.filled, 'item')} without a row given the {r.fill} row (e.g. {ex})"
            if r.rows_ignored:
                text += f"; {n(r.rows_ignored, 'row')} for items not kept ignored"
            lines.append(text)
        if not self.modalities:
            lines.append("  no feature files: ID-only models (LightGCN, BPR) only")
        lines.append(f"  wrote {', '.join(self.files)}")
        return "\n".join(lines)
