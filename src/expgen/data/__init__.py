"""Clip format, datasets, clip building from fitted heads, and the DataModule of the video generator."""

from expgen.data.clip_builder import ClipBuildConfig, ClipBuildReport, build_clips
from expgen.data.clips import Clip, ClipDataset, read_clip, read_metadata, write_clip
from expgen.data.datamodule import VideoDataModule
from expgen.data.subjects import write_subject_clips

__all__ = ["Clip", "ClipBuildConfig", "ClipBuildReport", "ClipDataset", "VideoDataModule", "build_clips",
           "read_clip", "read_metadata", "write_clip", "write_subject_clips"]
