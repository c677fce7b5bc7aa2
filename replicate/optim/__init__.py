"""Optimizers as composable transforms over tensor lists (optax style, torch ``_foreach_*`` ops)."""
from .base import HyperparameterError, Transform, chain
from .schedules import SCHEDULES, interpolate, make_schedule
from .transforms import add_decayed_weights, scale_by_adam, scale_by_lr, trace
from .variants import (ROWS, VARIANTS, Converge, IncompleteRow, Reference, Row, get_row,
                       hparam_defaults, param_groups, register, unregister, with_beta_schedule)
from .wrapper import TransformOptimizer, make

__all__ = [
    "HyperparameterError", "Transform", "chain", "SCHEDULES", "interpolate", "make_schedule",
    "add_decayed_weights", "scale_by_adam", "scale_by_lr", "trace",
    "ROWS", "VARIANTS", "Converge", "IncompleteRow", "Reference", "Row", "get_row", "hparam_defaults",
    "param_groups", "register", "unregister", "with_beta_schedule", "TransformOptimizer", "make",
]
