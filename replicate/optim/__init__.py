"""Optimizers as composable transforms over tensor lists (optax style, torch ``_foreach_*`` ops)."""
from .base import HyperparameterError, Transform, chain
from .schedules import SCHEDULES, make_schedule
from .transforms import add_decayed_weights, scale_by_adam, scale_by_lr, trace
from .variants import VARIANTS, hparam_defaults, register
from .wrapper import TransformOptimizer, make

__all__ = [
    "HyperparameterError", "Transform", "chain", "SCHEDULES", "make_schedule",
    "add_decayed_weights", "scale_by_adam", "scale_by_lr", "trace",
    "VARIANTS", "hparam_defaults", "register", "TransformOptimizer", "make",
]
