"""Clip format, datasets and the DataModule of the video generator."""

from expgen.data.clips import Clip, ClipDataset, read_clip, read_metadata, write_clip
from expgen.data.datamodule import VideoDataModule

__all__ = ["Clip", "ClipDataset", "VideoDataModule", "read_clip", "read_metadata", "write_clip"]
