"""Evaluation protocols of the paper (Sec. 4.1) and the manifest that pins a split down.

* **self-reenactment**: the reference is frame ``reference_frame`` of a clip; the driving frames are
  the frames after it at a temporal stride (``reference_frame + k * stride``, ``k = 1..num_frames``);
  the ground truth is the driving frames themselves.
* **cross-reenactment**: the reference is frame ``reference_frame`` of a clip of one identity, the
  driving frames (``k * stride``, ``k = 0..num_frames-1``) come from a clip of another identity; there
  is no ground truth.

Every frame is cropped with one square box per clip and item (exphead's face crop, found by the
68-point detector on the frames the item uses, or the centre square with ``crop="full"``) and resized
to ``size x size`` (512 in the paper). The selection is drawn with ``seed`` (:func:`make_manifest`) or read
from a fixed split (:func:`split_manifest`, :mod:`expgen.bench.splits`); the manifest (JSON) records each
item's clips, frame indices and crop boxes, so a run on a manifest needs neither the seed nor a face
detector to reproduce its inputs: a manifest that exists is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from torch import Tensor

from exphead.io_utils import atomic_path
from exphead.media import MediaError, to_tensor
from exphead.tracking import CropBox, LandmarkDetector, NoFaceError, VideoTracker

from .datasets import VideoRecord, clip_files, count_clip_frames, read_clip_frames
from .splits import Split, validate_split

logger = logging.getLogger(__name__)

Protocol = Literal["self", "cross"]
CropMode = Literal["face", "full"]
MANIFEST_FORMAT = "exp-bench-manifest/1"


@dataclass
class ClipFrames:
    """Frames of one clip used by an item: ``frames`` indices and the crop ``box`` (left, top, side) in pixels."""

    video: str
    identity: str
    frames: list[int]
    box: list[int]


@dataclass
class BenchItem:
    """One test case: ``reference`` (one frame) animated by ``driving`` (F frames)."""

    id: str
    reference: ClipFrames
    driving: ClipFrames


@dataclass
class Manifest:
    """A reproducible split: settings and items. Clip paths are relative to ``root``."""

    dataset: str
    root: str
    protocol: Protocol
    size: int = 512
    stride: int = 4
    num_frames: int = 16
    reference_frame: int = 0
    seed: int = 0
    crop: CropMode = "face"
    items: list[BenchItem] = field(default_factory=list)
    split: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The manifest as a JSON-ready dict (with its format tag; ``split`` and ``skipped`` only when set)."""
        data = {"format": MANIFEST_FORMAT, **asdict(self)}
        for key in ("split", "skipped"):
            if not data[key]:
                data.pop(key)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        """Inverse of :meth:`to_json`."""
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not an exp-bench manifest (format {data.get('format')!r}, expected {MANIFEST_FORMAT})")
        fields = {k: v for k, v in data.items() if k not in ("format", "items")}
        items = [BenchItem(i["id"], ClipFrames(**i["reference"]), ClipFrames(**i["driving"])) for i in data["items"]]
        return cls(**fields, items=items)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest as JSON (atomically)."""
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_json(), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> Manifest:
        """Read a manifest; ``root`` overrides the dataset root it was made on (the data moved)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        manifest = cls.from_json(json.loads(path.read_text()))
        if root is not None:
            manifest.root = str(root)
        return manifest

    def fingerprint(self) -> str:
        """Short hash of the settings and items (not the root): cached results are valid for it only."""
        data = self.to_json()
        data.pop("root")
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class PreparedItem:
    """Cropped inputs of an item: ``reference`` ``3 x S x S``, ``driving`` ``F x 3 x S x S`` in [0, 1],
    ``ground_truth`` (self-reenactment: the driving frames; cross: None), and the driving clip's fps."""

    item: BenchItem
    protocol: Protocol
    reference: Tensor
    driving: Tensor
    ground_truth: Tensor | None
    fps: float


def _crop_box(frames: np.ndarray, crop: CropMode, detector: LandmarkDetector | None, size: int) -> list[int]:
    if crop == "full":
        h, w = frames.shape[1:3]
        side = min(h, w)
        return [(w - side) // 2, (h - side) // 2, side]
    if crop != "face":
        raise ValueError(f"crop must be 'face' or 'full', got {crop!r}")
    box = VideoTracker(size=size, detector=detector).locate(frames)
    return [box.left, box.top, box.side]


def _usable(count: int, start: int, stride: int, num_frames: int) -> list[int]:
    return [i for i in range(start, count, stride)][:num_frames]


class _Items:
    """Builds items of one manifest (frame counts read once per clip)."""

    def __init__(self, manifest: Manifest, detector: LandmarkDetector | None) -> None:
        self.manifest, self.detector, self.counts = manifest, detector, {}

    def count(self, record: VideoRecord) -> int:
        if record.id not in self.counts:
            self.counts[record.id] = count_clip_frames(self.manifest.root, record.source)
        return self.counts[record.id]

    def box(self, record: VideoRecord, frames: list[int]) -> list[int]:
        m = self.manifest
        return _crop_box(read_clip_frames(m.root, record.source, frames)[0], m.crop, self.detector, m.size)

    def self_item(self, clip: VideoRecord) -> BenchItem:
        """Reference ``reference_frame``, driving the next ``num_frames`` frames at ``stride`` (one crop box)."""
        m = self.manifest
        frames = _usable(self.count(clip), m.reference_frame + m.stride, m.stride, m.num_frames)
        if len(frames) < 2:
            raise ValueError(f"{self.count(clip)} frames, too short for stride {m.stride}")
        box = self.box(clip, [m.reference_frame, *frames])
        return BenchItem(clip.id, ClipFrames(clip.source, clip.identity, [m.reference_frame], box),
                         ClipFrames(clip.source, clip.identity, frames, box))

    def cross_item(self, driver: VideoRecord, reference: VideoRecord) -> BenchItem:
        """Driving frames ``k * stride`` of ``driver``, reference frame ``reference_frame`` of ``reference``."""
        m = self.manifest
        frames = _usable(self.count(driver), 0, m.stride, m.num_frames)
        if len(frames) < 2 or self.count(reference) <= m.reference_frame:
            raise ValueError(f"too short ({self.count(driver)} driving, {self.count(reference)} reference frames)")
        return BenchItem(f"{driver.id}__{reference.id}",
                         ClipFrames(reference.source, reference.identity, [m.reference_frame],
                                    self.box(reference, [m.reference_frame])),
                         ClipFrames(driver.source, driver.identity, frames, self.box(driver, frames)))


def make_manifest(records: list[VideoRecord], dataset: str, root: str | os.PathLike, protocol: Protocol,
                  *, size: int = 512, stride: int = 4, num_frames: int = 16, num_items: int | None = None,
                  reference_frame: int = 0, seed: int = 0, crop: CropMode = "face",
                  detector: LandmarkDetector | None = None) -> Manifest:
    """Draw a split with ``seed`` and find each item's crop boxes.

    Self: ``num_items`` clips (all when None) in a seeded order, skipping clips with fewer than two
    driving frames. Cross: ``num_items`` pairs (default: one per clip) of a driving clip and a reference
    clip of another identity, both drawn with the seed.

    Raises:
        ValueError: bad settings, or cross-reenactment with a single identity.
    """
    if protocol not in ("self", "cross"):
        raise ValueError(f"protocol must be 'self' or 'cross', got {protocol!r}")
    if stride < 1 or num_frames < 1 or size < 16:
        raise ValueError(f"need stride >= 1, num_frames >= 1 and size >= 16, got {stride}, {num_frames}, {size}")
    rng = random.Random(seed)
    order = sorted(records, key=lambda r: r.id)
    rng.shuffle(order)
    wanted = num_items if num_items is not None else len(order)
    manifest = Manifest(dataset, str(Path(root).resolve()), protocol, size, stride, num_frames, reference_frame, seed,
                        crop)
    if protocol == "cross" and len({r.identity for r in records}) < 2:
        raise ValueError("cross-reenactment needs clips of at least two identities")
    build = _Items(manifest, detector)
    for driver in order * (1 if protocol == "self" else max(1, -(-wanted // len(order)))):
        if len(manifest.items) >= wanted:
            break
        try:
            if protocol == "self":
                item = build.self_item(driver)
            else:
                ref = rng.choice(sorted((r for r in records if r.identity != driver.identity), key=lambda r: r.id))
                if any(i.id == f"{driver.id}__{ref.id}" for i in manifest.items):
                    continue
                item = build.cross_item(driver, ref)
        except (NoFaceError, MediaError, ValueError) as err:
            logger.warning("%s: %s; skipped", driver.id, err)
            continue
        manifest.items.append(item)
    if not manifest.items:
        raise ValueError(f"no usable {protocol}-reenactment item among {len(records)} clips (see the warnings)")
    if len(manifest.items) < wanted:
        logger.warning("%d of the %d items asked could be made", len(manifest.items), wanted)
    return manifest


def split_manifest(split: Split, root: str | os.PathLike, protocol: Protocol, *, size: int = 512,
                   crop: CropMode = "face", detector: LandmarkDetector | None = None) -> Manifest:
    """The manifest of a fixed split (:mod:`expgen.bench.splits`): its items, frames and pairs, with crop boxes
    found on the data under ``root``. An item that cannot be made (too short, no face) is left out and listed in
    ``Manifest.skipped`` with the reason.

    Raises:
        FileNotFoundError: files of the split are missing under ``root`` (all listed in one message).
        ValueError: the split has no such protocol, or no item can be made.
    """
    validate_split(split, root, protocol)
    spec = split.protocol(protocol)
    manifest = Manifest(split.dataset, str(Path(root).resolve()), protocol, size, spec.stride, spec.num_frames,
                        spec.reference_frame, 0, crop, split=f"{split.name}: {split.source}")
    build = _Items(manifest, detector)
    jobs = ([(i, lambda i=i: build.self_item(split.clips[i])) for i in spec.items] if protocol == "self" else
            [(f"{d}__{r}", lambda d=d, r=r: build.cross_item(split.clips[d], split.clips[r])) for d, r in spec.pairs])
    for item_id, make in jobs:
        try:
            manifest.items.append(make())
        except (NoFaceError, MediaError, ValueError) as err:
            logger.warning("%s: %s; left out of the split", item_id, err)
            manifest.skipped[item_id] = f"{type(err).__name__}: {err}"
    if not manifest.items:
        raise ValueError(f"no item of split {split.source} ({protocol}) could be made: {manifest.skipped}")
    return manifest


def missing_clips(manifest: Manifest) -> list[str]:
    """The clips of a manifest not found under its root (dataset-relative sources)."""
    sources = dict.fromkeys(c.video for item in manifest.items for c in (item.reference, item.driving))
    missing = []
    for source in sources:
        try:
            clip_files(manifest.root, source)
        except FileNotFoundError:
            missing.append(source)
    return missing


def _cropped(frames: np.ndarray, box: list[int], size: int) -> Tensor:
    left, top, side = box
    return to_tensor(CropBox(left, top, side, frames.shape[1], frames.shape[2]).apply(frames, size))


def prepare_item(manifest: Manifest, item: BenchItem) -> PreparedItem:
    """Read and crop an item's frames (``size x size``, float in [0, 1]) as the manifest says."""
    ref, drv = item.reference, item.driving
    if ref.video == drv.video:  # self-reenactment: one read of the clip
        frames, fps = read_clip_frames(manifest.root, drv.video, ref.frames + drv.frames)
        ref_frames, drv_frames = frames[: len(ref.frames)], frames[len(ref.frames):]
    else:
        ref_frames, _ = read_clip_frames(manifest.root, ref.video, ref.frames)
        drv_frames, fps = read_clip_frames(manifest.root, drv.video, drv.frames)
    reference = _cropped(ref_frames, ref.box, manifest.size)[0]
    driving = _cropped(drv_frames, drv.box, manifest.size)
    truth = driving if manifest.protocol == "self" else None
    return PreparedItem(item, manifest.protocol, reference, driving, truth, fps)


def load_or_make_manifest(path: str | os.PathLike, records_fn: Callable[[], list[VideoRecord]],
                          **settings: object) -> Manifest:
    """The manifest at ``path`` as it is when it exists; else :func:`make_manifest` on ``records_fn()``, saved.

    ``settings`` are :func:`make_manifest`'s arguments (``dataset``, ``root``, ``protocol``, ...). A reused
    manifest whose protocol differs from the one asked is an error.
    """
    path = Path(path)
    if path.is_file():
        manifest = Manifest.load(path)
        asked = settings.get("protocol")
        if asked is not None and asked != manifest.protocol:
            raise ValueError(f"{path} is a {manifest.protocol}-reenactment manifest, {asked} was asked: "
                             "use another output folder or --protocol " + manifest.protocol)
        logger.info("reusing manifest %s (%d items)", path, len(manifest.items))
        return manifest
    manifest = make_manifest(records_fn(), **settings)
    manifest.save(path)
    logger.info("wrote manifest %s (%d items)", path, len(manifest.items))
    return manifest


__all__ = ["BenchItem", "ClipFrames", "Manifest", "PreparedItem", "load_or_make_manifest", "make_manifest",
           "missing_clips", "prepare_item", "split_manifest"]
