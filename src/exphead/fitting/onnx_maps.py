"""DAViD ONNX models (Saleh et al., ICCV 2025) estimating normal, relative-depth and foreground maps."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)
MODEL_ENV = {"normal": "EXPPORTRAIT_DAVID_NORMAL", "depth": "EXPPORTRAIT_DAVID_DEPTH",
             "foreground": "EXPPORTRAIT_DAVID_FOREGROUND"}
MULTI_TASK_OUTPUTS = ("depth", "normal", "foreground")  # output order of DAViD's multi-task graph
DAVID_INPUT_SIZE = 512
MATTE_RANGE = (-0.25, 1.25)  # a foreground matte outside this range is the output of another task
NormalFrame = Literal["auto", "opengl", "opencv"]
MapKind = Literal["normal", "depth", "foreground"]


def pad_to_square(images: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """``B x C x H x W`` -> ``B x C x L x L`` with ``L = max(H, W)``: centred, borders replicated (as DAViD's
    ``prepare_image_for_model``). Also returns the ``(top, left)`` padding, to crop the maps back."""
    h, w = images.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return F.pad(images, (left, side - w - left, top, side - h - top), mode="replicate"), (top, left)


def _is_dim(value: object, size: int) -> bool:
    """A declared ONNX dimension matches ``size`` (symbolic / unknown dimensions match anything)."""
    return not isinstance(value, int) or value == size


class OnnxMapEstimator:
    """Normal, relative-depth or foreground maps from a DAViD ONNX model (Saleh et al., ICCV 2025).

    The DAViD contract (microsoft/DAViD runtime and model cards): one input ``1 x 3 x 512 x 512``
    float32 **BGR** in [0, 1] (no mean/std), the frame replicate-padded to a centred square and
    resized; the normal model returns ``1 x 3 x S x S`` XYZ normals (unit length after
    re-normalising), the depth model ``1 x S x S`` relative depth with closer = larger (its runtime
    negates it), the foreground-segmentation model a ``1 x 1 x S x S`` soft matte (its runtime takes
    ``output[0][0]`` as ``1 x S x S`` and clips it to [0, 1]); the multi-task model returns
    ``[depth, normal, foreground]`` (:data:`MULTI_TASK_OUTPUTS`) with depth not negated, so it
    serves as any ``kind``. Outputs are resized back onto the square, un-padded and returned as:

    * normals ``F x 3 x H x W``: unit, in the library's camera frame (OpenCV: x right, y down,
      z forward; visible surfaces have ``n_z < 0``). ``normal_frame`` gives the model's frame:
      ``"opengl"`` (y up, z towards the camera), ``"opencv"``, or ``"auto"``: decided once, on the
      first frames, from the sign of the median ``n_z`` at the image centre (visible surfaces face
      the camera; with x right, that sign fixes the right-handed frame).
    * depth ``F x 1 x H x W``: relative, larger = farther, unknown scale and shift (fit it with
      ``depth_alignment="scale_shift"``).
    * foreground ``F x 1 x H x W``: the soft matte in [0, 1] (1 = person); values far outside
      [0, 1] (:data:`MATTE_RANGE`) are an error, as they come from a model of another task.

    Raises:
        FileNotFoundError: the model file is missing.
        ImportError: onnxruntime is not installed (``pip install 'expportrait[onnx]'``).
        ValueError: the graph's input is not ``B x 3 x S x S`` float, or its output is not the
            layout of a DAViD ``kind`` model.
    """

    def __init__(self, path: str | os.PathLike, kind: MapKind = "normal", normal_frame: NormalFrame = "auto",
                 input_size: int = DAVID_INPUT_SIZE, invert_depth: bool | None = None) -> None:
        if kind not in MODEL_ENV:
            raise ValueError(f"kind must be one of {tuple(MODEL_ENV)}, got {kind!r}")
        if normal_frame not in ("auto", "opengl", "opencv"):
            raise ValueError(f"normal_frame must be 'auto', 'opengl' or 'opencv', got {normal_frame!r}")
        self.path, self.kind = Path(path), kind
        if not self.path.is_file():
            raise FileNotFoundError(f"DAViD {kind} model not found: {self.path} (pass it with --{kind}-model "
                                    f"or ${MODEL_ENV[kind]})")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("DAViD ONNX models need onnxruntime: pip install 'expportrait[onnx]'") from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{self.path} is not a readable ONNX model: {err}") from err
        self.frame = None if normal_frame == "auto" else normal_frame
        self.input_name, self.size = self._check_input(input_size)
        outputs = self.session.get_outputs()
        if len(outputs) not in (1, len(MULTI_TASK_OUTPUTS)):
            raise ValueError(f"{self.path}: the graph has {len(outputs)} outputs {[o.name for o in outputs]}; a "
                             f"DAViD model has one, or three {list(MULTI_TASK_OUTPUTS)} (the multi-task model)")
        self.multi_task = len(outputs) > 1
        index = MULTI_TASK_OUTPUTS.index(kind) if self.multi_task else 0
        self.output_name = outputs[index].name
        self._check_output(tuple(outputs[index].shape))
        self.invert_depth = not self.multi_task if invert_depth is None else invert_depth

    def _check_input(self, input_size: int) -> tuple[str, int]:
        inputs = self.session.get_inputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(shape) != 4 or not _is_dim(shape[1], 3):
            got = [(i.name, i.type, i.shape) for i in inputs]
            raise ValueError(f"{self.path}: the graph takes {got}; a DAViD model takes one float32 input "
                             "B x 3 x S x S (BGR in [0, 1])")
        h, w = shape[2:]
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise ValueError(f"{self.path}: input {inputs[0].name!r} is {h} x {w}; a DAViD model takes a square "
                                 "S x S image")
            return inputs[0].name, h
        return inputs[0].name, input_size

    def _check_output(self, shape: tuple) -> None:
        if self.kind == "normal":
            ok = len(shape) == 4 and _is_dim(shape[1], 3)
        else:
            ok = len(shape) == 3 or (len(shape) == 4 and _is_dim(shape[1], 1))
        if not ok:
            want = "B x 3 x S x S" if self.kind == "normal" else "B x S x S or B x 1 x S x S"
            raise ValueError(f"{self.path}: output {self.output_name!r} has shape {list(shape)}, but a DAViD "
                             f"{self.kind} model returns {want} (is this the model of another task?)")

    def _check_matte(self, matte: Tensor) -> Tensor:
        """The ``F x 1 x H x W`` matte clipped to [0, 1], as DAViD's runtime does (cubic resizing overshoots)."""
        lo, hi = matte.min().item(), matte.max().item()
        if lo < MATTE_RANGE[0] or hi > MATTE_RANGE[1]:
            raise ValueError(f"{self.path}: output {self.output_name!r} spans [{lo:.3g}, {hi:.3g}], but a DAViD "
                             "foreground model returns a matte in [0, 1] (is this the depth model? pass it with "
                             "--depth-model, and the foreground-segmentation model with --foreground-model)")
        return matte.clamp(0, 1)

    def _to_camera_frame(self, normal: Tensor) -> Tensor:
        """``F x 3 x H x W`` unit normals in the model's frame -> the OpenCV camera frame."""
        if self.frame is None:
            h, w = normal.shape[-2:]
            z = normal[:, 2, h // 4: h - h // 4, w // 4: w - w // 4].median().item()
            self.frame = "opengl" if z > 0 else "opencv"
            log = logger.warning if abs(z) < 0.2 else logger.info
            log("%s: median n_z %+.2f at the image centre -> %s normals (%s); converting to OpenCV axes (set "
                "normal_frame to override)", self.path.name, z, self.frame,
                "y up, z towards the camera" if self.frame == "opengl" else "y down, z forward")
        if self.frame == "opengl":
            return normal * normal.new_tensor([1.0, -1.0, -1.0])[None, :, None, None]
        return normal

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> Tensor:
        """``F x 3 x H x W`` RGB in [0, 1] -> normals ``F x 3 x H x W``, relative depth ``F x 1 x H x W`` or
        the foreground matte ``F x 1 x H x W`` in [0, 1]."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be F x 3 x H x W RGB in [0, 1], got {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        logger.info("%s: %s maps for %d frames", self.path.name, self.kind, frames.shape[0])
        outs = []
        for frame in frames.detach().float().cpu():  # one at a time: 512 px inputs add up
            square, (top, left) = pad_to_square(frame[None].flip(1))  # RGB -> BGR
            side = square.shape[-1]
            x = F.interpolate(square, (self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=side > self.size)
            y = self.session.run([self.output_name], {self.input_name: x.contiguous().numpy()})[0]
            self._check_output(y.shape)
            y = torch.from_numpy(np.asarray(y, dtype=np.float32))
            y = F.interpolate(y[:, None] if y.dim() == 3 else y, (side, side), mode="bilinear", align_corners=False)
            outs.append(y[..., top: top + h, left: left + w])
        out = torch.cat(outs)
        if self.kind == "depth":
            return -out if self.invert_depth else out
        if self.kind == "foreground":
            return self._check_matte(out)
        return self._to_camera_frame(F.normalize(out, dim=1))
