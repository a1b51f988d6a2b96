"""Evaluation: metrics and their catalog, non-generative references, the cached-scene `Evaluator`,
grids, scoring of image files (the `evaluate` and `score` commands are in commands/).

`Evaluator` and friends load lazily (PEP 562), so the config schema can import the metric catalog
without importing the evaluator (which imports the config package).
"""

__all__ = ["EvalResult", "Evaluator", "aggregate"]


def __getattr__(name: str):
    if name in __all__:
        from . import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
