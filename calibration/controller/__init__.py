"""Fitting the adaptive decoding controller: collect (Algorithm 1), fit, measure, report."""

from .collect import LevelSamples, collect_levels
from .fit import cross_validated_probabilities, fit_controller
from .report import build_report, write_plots

__all__ = ["LevelSamples", "build_report", "collect_levels", "cross_validated_probabilities", "fit_controller",
           "write_plots"]
