"""``edge-sdk eval``: the whole pipeline over photos, against JPEG, WebP and a non-progressive codec."""

from .evaluate import CONFIDENT, EvalSettings, Evaluator, bd_rates, curves, evaluate, teacher_stability, write_csv, write_plots

__all__ = ["CONFIDENT", "EvalSettings", "Evaluator", "bd_rates", "curves", "evaluate", "teacher_stability", "write_csv",
           "write_plots"]
