"""``Kind``: one kind of per-experiment figure of the report, declared by its family module
(``KINDS`` beside its ``fig_*`` function) and collected, in the page's order, by
``replicate.report.FIGURES``; ``Data``: what one experiment's figures read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .selection import episodes


@dataclass
class Data:
    """What one experiment's figures read: its runs, tidy metrics and histograms."""

    root: Path
    experiment: str
    runs: pd.DataFrame
    metrics: pd.DataFrame
    hist: pd.DataFrame
    _names: set = field(default_factory=set)
    _eps: pd.DataFrame | None = None

    @property
    def eps(self) -> pd.DataFrame:
        """The loss-spike episodes of every run (computed once, shared by the figures)."""
        if self._eps is None:
            self._eps = episodes(self.metrics[self.metrics["metric"] == "loss"]) if self.has("loss") else \
                episodes(self.metrics.iloc[:0])
        return self._eps

    def has(self, prefix: str) -> bool:
        if not self._names:
            self._names = set(self.metrics["metric"].unique()) if not self.metrics.empty else {"-"}
        return any(n == prefix or n.startswith(prefix + "/") for n in self._names)


@dataclass
class Kind:
    """One kind of per-experiment figure: when it applies, how it is drawn, what it says."""

    name: str
    title: str
    applies: Callable[[Data], bool]
    draw: Callable[[Data], object]
    caption: str
    needs: str  # the placeholder's reason when ``draw`` returns None
