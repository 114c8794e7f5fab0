"""The state of a video animated in chunks: the prepared job (:class:`Plan`), each generated :class:`Chunk`, and
what carries from one chunk to the next (:class:`StreamState`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from exphead.camera import Camera
from exphead.head_model import HeadParams
from exphead.media import FrameSource
from exphead.personalized import PersonalizedHead
from exphead.tracking import CropBox

Mode = Literal["cross", "self"]


@dataclass
class Plan:
    """A prepared job: the driving source, its crop box, and the fitted reference (output size ``S``).

    Attributes:
        frames: the driving frames (a :class:`FrameSource`, or an ``F x H x W x 3`` uint8 array).
        num_frames, fps: driving frames used (after stride and max_frames) and their rate.
        driving_box, reference_box: the square crops in the driving frames and the reference image.
        head: the reference identity's personalized head; camera: its camera at ``S x S``.
        reference: ``3 x S x S`` reference crop; reference_normal: ``3 x S x S`` N^R; mode: cross or self.
        reference_image: the whole reference image (``H x W x 3`` uint8) the output is composited into.
        origin_frame: the driving frame relative motion starts from (cross: 0; self: the reference frame).
        reference_marks: ``68 x 2`` iBUG landmarks detected in ``reference`` (pixels; None: no face found there).
    """

    frames: FrameSource | np.ndarray
    num_frames: int
    fps: float
    name: str
    driving_box: CropBox
    reference_box: CropBox
    head: PersonalizedHead
    camera: Camera
    reference: Tensor
    reference_normal: Tensor
    mode: Mode
    reference_image: np.ndarray
    origin_frame: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    reference_marks: Tensor | None = None

    def frame_chunks(self, size: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """``(first index, F' x H x W x 3 uint8)`` chunks of the driving frames from ``start``."""
        if isinstance(self.frames, np.ndarray):
            for s in range(start, self.num_frames, size):
                yield s, self.frames[s:s + size]
            return
        index, buffer = 0, []
        for frame in self.frames:
            if index >= start:
                buffer.append(frame)
                if len(buffer) == size:
                    yield index + 1 - size, np.stack(buffer)
                    buffer = []
            index += 1
        if buffer:
            yield index - len(buffer), np.stack(buffer)


@dataclass
class Chunk:
    """Consecutive generated frames ``start .. start + F' - 1`` (all ``F' x 3 x S x S`` on the CPU), and the
    ``F' x 68 x 3`` iBUG landmarks of the driven mesh the generator followed (world frame of ``Plan.camera``)."""

    start: int
    frames: Tensor
    driving: Tensor
    driving_normals: Tensor
    params: HeadParams
    landmarks: Tensor


@dataclass
class HeldFrames:
    """The last frames of a generator call, held back from the output until the next call has blended into them
    (``K`` frames: the :class:`Chunk` fields, and the driven ``K x N_s x 3`` vertices and ``K x 68 x 3`` landmarks
    the next call is given again, and their ``K x 2`` iris shifts)."""

    frames: Tensor
    driving: Tensor
    driving_normals: Tensor
    params: HeadParams
    vertices: Tensor
    landmarks: Tensor
    gaze: Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]


@dataclass
class StreamState:
    """What carries from one chunk to the next.

    Attributes:
        next_frame: the next driving frame to read.
        origin: the driver's tracked parameters of ``Plan.origin_frame`` (relative motion starts from it).
        track_tail: tracked parameters of the last frames tracked (the next chunk's tracking prefix).
        emit_tail: tracked parameters of the last frames generated (the transfer module's left context).
        pending_params, pending_crops: frames tracked but not generated yet (the transfer module's right
            context was not tracked yet), with their output-size crops.
        held: frames generated but not output yet (:class:`HeldFrames`); ``emit_tail`` includes them.
    """

    next_frame: int = 0
    origin: HeadParams | None = None
    track_tail: HeadParams | None = None
    emit_tail: HeadParams | None = None
    pending_params: HeadParams | None = None
    pending_crops: np.ndarray | None = None
    held: HeldFrames | None = None

    def written_tail(self) -> HeadParams | None:
        """``emit_tail`` without the held frames: the parameters of the last frames output."""
        if self.held is None or self.emit_tail is None:
            return self.emit_tail
        return slice_params(self.emit_tail, slice(0, self.emit_tail.batch_size - len(self.held)))

    @staticmethod
    def resume(next_frame: int, origin: HeadParams, tail: HeadParams) -> StreamState:
        """The state after ``next_frame`` frames were generated, from the origin and their last parameters."""
        return StreamState(next_frame, origin, tail, tail)


def cat_params(parts: list[HeadParams | None]) -> HeadParams | None:
    parts = [p for p in parts if p is not None and p.batch_size]
    if not parts:
        return None
    return HeadParams(**{k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].to_dict()})


def slice_params(params: HeadParams | None, sl: slice) -> HeadParams | None:
    return None if params is None else params.map(lambda v: v[sl])


__all__ = ["Chunk", "HeldFrames", "Plan", "StreamState", "cat_params", "slice_params"]
