"""Metrics of the paper's Table 1 (Sec. 4.1) as torchmetrics ``Metric`` classes with functional twins.

=========  ============================  =====================================  =========
metric     class                         functional                             better
=========  ============================  =====================================  =========
PSNR       :class:`PSNR`                 :func:`psnr`                           higher
SSIM       :class:`SSIM`                 :func:`ssim`                           higher
LPIPS      :class:`LPIPS`                :func:`lpips`                          lower
L1         :class:`L1Distance`           :func:`l1_distance`                    lower
CSIM       :class:`CSIM`                 :func:`csim`                           higher
AED        :class:`AED`                  :func:`aed` (on parameters)            lower
APD        :class:`APD`                  :func:`apd` (on parameters)            lower
jitter     :class:`LandmarkJitter`       :func:`landmark_jitter`                lower
           :class:`JitterRatio`          :func:`jitter_ratio` (out / driver)    lower
=========  ============================  =====================================  =========

Frames are ``N x 3 x H x W`` float in ``[0, 1]`` (videos ``B x F x 3 x H x W`` are flattened); every
metric is a mean over frames of a per-frame value. LPIPS reads its ImageNet backbone from a local
file (see :mod:`exphead.metrics.lpips`); CSIM uses dlib's face descriptor by default, whose values
are not comparable to ArcFace CSIM; AED/APD take a :class:`MotionExtractor`: mediapipe's face mesh
(:class:`MediaPipeMotionExtractor`, independent of ExpPortrait) or exphead's tracker
(:class:`TrackerMotionExtractor`). Jitter takes landmarks of any source (``F x K x 2``).
"""

from exphead.metrics.csim import CSIM, csim
from exphead.metrics.face_embedding import (
    ArcFaceOnnxEmbedder,
    DlibFaceEmbedder,
    FaceEmbedder,
    FaceEmbeddings,
    FaceNetEmbedder,
)
from exphead.metrics.frame_metric import FrameAveragedMetric
from exphead.metrics.image import PSNR, SSIM, L1Distance, l1_distance, psnr, ssim
from exphead.metrics.jitter import JitterRatio, LandmarkJitter, jitter_ratio, landmark_jitter
from exphead.metrics.lpips import LPIPS, LPIPS_BACKBONE_ENV, lpips
from exphead.metrics.mediapipe_motion import MediaPipeMotionExtractor, MeshMotionEstimate
from exphead.metrics.motion import (
    AED,
    APD,
    MotionEstimate,
    MotionExtractor,
    MotionParameters,
    aed,
    apd,
    expression_distance,
    pose_distance,
)
from exphead.metrics.tracker_motion import TrackerMotionExtractor

__all__ = [
    "AED",
    "APD",
    "CSIM",
    "LPIPS",
    "LPIPS_BACKBONE_ENV",
    "PSNR",
    "SSIM",
    "TrackerMotionExtractor",
    "ArcFaceOnnxEmbedder",
    "DlibFaceEmbedder",
    "FaceEmbedder",
    "FaceEmbeddings",
    "FaceNetEmbedder",
    "FrameAveragedMetric",
    "JitterRatio",
    "L1Distance",
    "LandmarkJitter",
    "MediaPipeMotionExtractor",
    "MeshMotionEstimate",
    "MotionEstimate",
    "MotionExtractor",
    "MotionParameters",
    "aed",
    "apd",
    "csim",
    "expression_distance",
    "jitter_ratio",
    "l1_distance",
    "landmark_jitter",
    "lpips",
    "pose_distance",
    "psnr",
    "ssim",
]
