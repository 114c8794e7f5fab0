"""Clip format, datasets, clip building from fitted heads, and the DataModule of the video generator."""

from expgen.data.clips import Clip, ClipDataset, read_clip, read_metadata, write_clip
from expgen.data.datamodule import VideoDataModule
from expgen.data.heads import ClipBuildConfig, ClipBuildReport, build_clips, load_frozen_transfer
from expgen.data.subjects import write_subject_clips

__all__ = ["Clip", "ClipBuildConfig", "ClipBuildReport", "ClipDataset", "VideoDataModule", "build_clips",
           "load_frozen_transfer", "read_clip", "read_metadata", "write_clip", "write_subject_clips"]
