"""Face detection, cropping and SMPL-X tracking of videos and images (paper Sec. 3.1.2, first step).

:class:`VideoTracker` is the one entry: frames -> crop box -> landmarks -> per-frame SMPL-X parameters.
"""

from .crop import CropBox, face_crop_box
from .faces import DlibFaceDetector, FaceDetection, FaceDetector, MTCNNFaceDetector, main_faces, make_face_detector
from .landmarks import LandmarkDetector, NoFaceError, detect_landmarks, mouth_opening
from .tracker import TrackerConfig, TrackingResult, smooth_tracking, track_landmarks
from .video import FaceTrack, TrackedVideo, VideoTracker, track

__all__ = ["CropBox", "DlibFaceDetector", "FaceDetection", "FaceDetector", "FaceTrack", "LandmarkDetector",
           "MTCNNFaceDetector", "NoFaceError", "TrackedVideo", "TrackerConfig", "TrackingResult", "VideoTracker",
           "detect_landmarks", "face_crop_box", "main_faces", "make_face_detector", "mouth_opening",
           "smooth_tracking", "track", "track_landmarks"]
