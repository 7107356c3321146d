"""The evaluation harness: replay videos through streaming schemes, report side by side."""

from edgeva.eval.harness import EvalConfig, EvalResult, evaluate, pick_best, summarize

__all__ = ["EvalConfig", "EvalResult", "evaluate", "pick_best", "summarize"]
