"""Fitting a personalized head (Sec. 3.1.2-3.1.3): targets, the detail-fit LightningModule and DataModule,
and :func:`fit_subject`."""

from .config import FitConfig
from .data import SubjectDataModule
from .fit import fit_subject, head_from_module
from .losses import DetailLossWeights
from .map_models import add_maps, resolve_map_model
from .module import HeadFitModule
from .onnx_maps import OnnxMapEstimator
from .sources import load_targets, subject_targets, synthetic_targets
from .targets import FitTargets

__all__ = ["DetailLossWeights", "FitConfig", "FitTargets", "HeadFitModule", "OnnxMapEstimator", "SubjectDataModule",
           "add_maps", "fit_subject", "head_from_module", "load_targets", "resolve_map_model", "subject_targets",
           "synthetic_targets"]
