"""The offline toy world: synthetic data that shows over-refusal on a CPU in minutes."""

from .generate import THINK_CLOSE, THINK_OPEN
from .world import CAPABILITY_TASKS, EVAL_SHAPES, build_world

__all__ = ["CAPABILITY_TASKS", "EVAL_SHAPES", "THINK_CLOSE", "THINK_OPEN", "build_world"]
