"""``Kind``: one kind of per-experiment figure of the report, declared by its family module
(``KINDS`` beside its ``fig_*`` function) and collected, in the page's order, by
``replicate.report.FIGURES``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .. import Data


@dataclass
class Kind:
    """One kind of per-experiment figure: when it applies, how it is drawn, what it says."""

    name: str
    title: str
    applies: Callable[[Data], bool]
    draw: Callable[[Data], object]
    caption: str
    needs: str  # the placeholder's reason when ``draw`` returns None
