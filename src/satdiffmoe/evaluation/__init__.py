"""Evaluation: metrics, non-generative references, the cached-scene `Evaluator`, grids, `evaluate`."""

from .evaluator import EvalResult, Evaluator, aggregate

__all__ = ["EvalResult", "Evaluator", "aggregate"]
