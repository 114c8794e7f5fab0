"""Fitting a personalized head (Sec. 3.1.2-3.1.3)."""

from .data import SubjectDataModule
from .fit import FitConfig, add_maps, fit_subject, load_targets, subject_targets, synthetic_targets, track
from .module import DetailLossWeights, HeadFitModule
from .targets import FitTargets, OnnxMapEstimator

__all__ = ["DetailLossWeights", "FitConfig", "FitTargets", "HeadFitModule", "OnnxMapEstimator", "SubjectDataModule",
           "add_maps", "fit_subject", "load_targets", "subject_targets", "synthetic_targets", "track"]
