"""Dataset adapters of the benchmark (paper Sec. 4.1): RAVDESS, NeRSemble and any listed folder of videos.

Each adapter lists :class:`VideoRecord` s — one talking-head clip of one identity — with paths relative
to the dataset root, so a manifest stays valid when the root moves. A clip is a video file, a folder
of frame images, or a glob pattern of frame images (NeRSemble v1 keeps one image per camera and
timestep); :func:`read_clip_frames` reads any of them.

Layouts understood:

* **RAVDESS** (Livingstone & Russo 2018): ``<root>/.../Actor_XX/MM-VC-EE-II-SS-RR-AA.mp4``, the names
  parsed by :func:`parse_ravdess_name`. The full-AV (``01``) and video-only (``02``) files show the
  same take; by default both are accepted and a take found twice is kept once (``02`` preferred).
* **NeRSemble** (Kirschstein et al. 2023), per participant ``PPP`` and sequence ``SEQ``, one camera
  serial per clip (default ``222200037``, the frontal camera):

  - v2 release (``nersemble_data`` downloader): ``PPP/sequences/SEQ/images/cam_<serial>.mp4``;
  - v1 release: ``PPP/sequences/SEQ/timesteps/frame_XXXXX/images/cam_<serial>.jpg|png``;
  - flat video folders: ``PPP/SEQ/cam_<serial>.mp4``.
* **folder**: a listing ``videos.csv`` or ``videos.json`` (columns / keys ``video``, ``identity``,
  optional ``id``; paths relative to the listing) or, without one, every video or frame folder under
  the root, its identity the name of the folder holding it (the file stem at the top level).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exphead.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource

logger = logging.getLogger(__name__)

NERSEMBLE_FRONTAL_CAMERA = "222200037"
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
_RAVDESS_FIELDS = {  # field -> allowed codes (and their names)
    "modality": {"01": "full-AV", "02": "video-only", "03": "audio-only"},
    "vocal_channel": {"01": "speech", "02": "song"},
    "emotion": RAVDESS_EMOTIONS,
    "intensity": {"01": "normal", "02": "strong"},
    "statement": {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"},
    "repetition": {"01": "1st", "02": "2nd"},
}
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class VideoRecord:
    """One clip of one identity.

    Attributes:
        id: file-name-safe unique name of the clip.
        source: path relative to the dataset root: a video, a folder of frames, or a glob pattern of
            frame images.
        identity: who is in the clip (clips of one identity are never paired in cross-reenactment).
        attributes: dataset fields (RAVDESS emotion, NeRSemble sequence, ...) for ``select`` filters.
    """

    id: str
    source: str
    identity: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name ``MM-VC-EE-II-SS-RR-AA`` (two-digit codes)."""

    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def emotion_name(self) -> str:
        """``neutral``, ``calm``, ``happy``, ``sad``, ``angry``, ``fearful``, ``disgust`` or ``surprised``."""
        return RAVDESS_EMOTIONS[self.emotion]

    @property
    def take(self) -> str:
        """The name without the modality: the same take in its full-AV and video-only files."""
        return "-".join((self.vocal_channel, self.emotion, self.intensity, self.statement, self.repetition,
                         self.actor))


def parse_ravdess_name(name: str) -> RavdessName:
    """Parse a RAVDESS file name (with or without folder and extension), e.g. ``02-01-06-01-02-01-12.mp4``.

    Raises:
        ValueError: the stem is not seven dash-separated two-digit codes, or a code is out of range
            (modality 01-03, vocal channel 01-02, emotion 01-08, intensity 01-02 and 01 for neutral,
            statement and repetition 01-02, actor 01-24).
    """
    stem = Path(name).name.split(".")[0]
    match = _RAVDESS_RE.match(stem)
    if match is None:
        raise ValueError(f"{name!r} is not a RAVDESS file name: expected MM-VC-EE-II-SS-RR-AA, "
                         "seven two-digit codes such as 02-01-06-01-02-01-12.mp4")
    parsed = RavdessName(*match.groups())
    for key, allowed in _RAVDESS_FIELDS.items():
        if getattr(parsed, key) not in allowed:
            raise ValueError(f"{name!r}: {key} code {getattr(parsed, key)} is not one of {sorted(allowed)}")
    if not 1 <= int(parsed.actor) <= 24:
        raise ValueError(f"{name!r}: actor code {parsed.actor} is not in 01-24")
    if parsed.emotion == "01" and parsed.intensity == "02":
        raise ValueError(f"{name!r}: RAVDESS has no strong intensity (02) for neutral (01)")
    return parsed


def ravdess_videos(root: str | os.PathLike, modalities: Sequence[str] = ("01", "02")) -> list[VideoRecord]:
    """RAVDESS video clips under ``root`` (searched recursively), identity ``Actor_XX``.

    Args:
        root: folder holding the ``Actor_XX`` folders (or the archives' extraction folders).
        modalities: accepted modality codes; a take present in several is kept once, the highest code
            first (video-only ``02`` over full-AV ``01``).
    """
    root = Path(root)
    takes: dict[str, tuple[RavdessName, Path]] = {}
    for path in sorted(root.rglob("*.mp4")):
        try:
            parsed = parse_ravdess_name(path.name)
        except ValueError as err:
            logger.warning("skipping %s: %s", path, err)
            continue
        if parsed.modality not in modalities:
            continue
        if path.parent.name.startswith("Actor_") and path.parent.name != f"Actor_{parsed.actor}":
            logger.warning("%s: actor %s in the name but the folder is %s", path, parsed.actor, path.parent.name)
        held = takes.get(parsed.take)
        if held is None or parsed.modality > held[0].modality:
            takes[parsed.take] = (parsed, path)
    records = []
    for parsed, path in takes.values():
        attributes = {key: getattr(parsed, key) for key in _RAVDESS_FIELDS} | {"actor": parsed.actor,
                                                                                  "emotion_name": parsed.emotion_name}
        records.append(VideoRecord(path.stem, path.relative_to(root).as_posix(), f"Actor_{parsed.actor}", attributes))
    return _checked(sorted(records, key=lambda r: r.id), root, "RAVDESS (Actor_XX/MM-VC-EE-II-SS-RR-AA.mp4)")


def nersemble_videos(root: str | os.PathLike, cameras: Sequence[str] | None = (NERSEMBLE_FRONTAL_CAMERA,),
                     ) -> list[VideoRecord]:
    """NeRSemble clips under ``root`` in any of the three layouts of the module docstring.

    Args:
        root: folder holding the participant folders (``017``, ``074``, ...).
        cameras: camera serials to use (``None``: every camera, each a clip of the same identity).
    """
    root = Path(root)
    found: dict[tuple[str, str, str], str] = {}
    patterns = [("*/sequences/*/images/cam_*.mp4", "v2"), ("*/*/cam_*.mp4", "flat"),
                ("*/sequences/*/timesteps/*/images/cam_*", "v1")]
    for pattern, layout in patterns:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).parts
            participant, sequence = rel[0], rel[2] if layout in ("v1", "v2") else rel[1]
            serial = path.stem.removeprefix("cam_")
            key = (participant, sequence, serial)
            if key in found or (cameras is not None and serial not in cameras):
                continue
            if layout == "v1":
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                found[key] = f"{participant}/sequences/{sequence}/timesteps/*/images/{path.name}"
            else:
                found[key] = "/".join(rel)
    records = [VideoRecord(_safe_id(f"{p}_{s}_{c}"), source, p, {"participant": p, "sequence": s, "camera": c})
               for (p, s, c), source in sorted(found.items())]
    what = "NeRSemble (PPP/sequences/SEQ/images/cam_SERIAL.mp4, PPP/sequences/SEQ/timesteps/frame_*/images/" \
           f"cam_SERIAL.jpg or PPP/SEQ/cam_SERIAL.mp4) with cameras {list(cameras) if cameras else 'any'}"
    return _checked(records, root, what)


def folder_videos(root: str | os.PathLike, listing: str | os.PathLike | None = None) -> list[VideoRecord]:
    """Clips of a folder, from a listing (CSV or JSON with ``video``, ``identity``, optional ``id``) or a scan.

    Args:
        root: the folder; listing paths are relative to the listing's folder.
        listing: the listing file; default ``root/videos.csv`` or ``root/videos.json`` when present, else
            every video file and frame folder under ``root`` (identity: the enclosing folder's name).
    """
    root = Path(root)
    if listing is None:
        listing = next((root / n for n in ("videos.csv", "videos.json") if (root / n).is_file()), None)
    if listing is None:
        return _checked(_scan_folder(root), root, "a folder of videos (or a videos.csv / videos.json listing)")
    listing = Path(listing)
    if not listing.is_file():
        raise FileNotFoundError(f"video listing not found: {listing}")
    if listing.suffix.lower() == ".json":
        rows = json.loads(listing.read_text())
        rows = rows.get("videos", []) if isinstance(rows, dict) else rows
    else:
        with listing.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("video") or not row.get("identity"):
            raise ValueError(f"{listing}: entry {i} needs 'video' and 'identity', got {row!r}")
        source = (listing.parent / str(row["video"])).resolve()
        if not source.exists():
            raise FileNotFoundError(f"{listing}: entry {i}: no video at {source}")
        rel = os.path.relpath(source, root.resolve())
        attributes = {k: str(v) for k, v in row.items() if k not in ("video", "identity", "id")}
        records.append(VideoRecord(_safe_id(str(row.get("id") or source.stem)), Path(rel).as_posix(),
                                   str(row["identity"]), attributes))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{listing}: clip ids must be unique; add an 'id' column (duplicates: "
                         f"{sorted({i for i in ids if ids.count(i) > 1})})")
    return _checked(records, root, f"the listing {listing}")


def _scan_folder(root: Path) -> list[VideoRecord]:
    records = []
    for path in sorted(root.rglob("*")):
        is_video = path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES
        is_frames = path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        if not (is_video or is_frames):
            continue
        rel = path.relative_to(root)
        identity = rel.parts[-2] if len(rel.parts) > 1 else path.stem
        records.append(VideoRecord(_safe_id("_".join(rel.with_suffix("").parts)), rel.as_posix(), identity))
    return records


def _safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_")


def _checked(records: list[VideoRecord], root: Path, what: str) -> list[VideoRecord]:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    if not records:
        raise FileNotFoundError(f"no clips found under {root}: expected {what}")
    logger.info("%d clips of %d identities under %s", len(records), len({r.identity for r in records}), root)
    return records


def load_dataset(name: str, root: str | os.PathLike, *, listing: str | os.PathLike | None = None,
                 cameras: Sequence[str] | None = (NERSEMBLE_FRONTAL_CAMERA,),
                 select: dict[str, Sequence[str]] | None = None) -> list[VideoRecord]:
    """The clips of dataset ``name`` (``ravdess``, ``nersemble`` or ``folder``) kept by ``select``.

    ``select`` maps an attribute (or ``identity``) to accepted values, e.g. ``{"emotion_name": ["happy"]}``.
    """
    if name == "ravdess":
        records = ravdess_videos(root)
    elif name == "nersemble":
        records = nersemble_videos(root, cameras)
    elif name == "folder":
        records = folder_videos(root, listing)
    else:
        raise ValueError(f"unknown dataset {name!r}: use 'ravdess', 'nersemble' or 'folder'")
    for key, values in (select or {}).items():
        records = [r for r in records if (r.identity if key == "identity" else r.attributes.get(key)) in values]
    if not records:
        raise ValueError(f"no {name} clip under {root} matches select={select}")
    return records


def clip_files(root: str | os.PathLike, source: str) -> Path | list[Path]:
    """The video file of a clip, or its sorted frame images (a folder or a glob pattern)."""
    path = Path(root) / source
    if any(ch in source for ch in "*?["):
        files = sorted(Path(root).glob(source))
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        return path
    else:
        raise FileNotFoundError(f"clip not found: {path} (is --root the dataset root the manifest was made on?)")
    if not files:
        raise FileNotFoundError(f"no frame images at {path}")
    return files


def read_clip_frames(root: str | os.PathLike, source: str, indices: Iterable[int] | None = None
                     ) -> tuple[np.ndarray, float]:
    """Frames ``F x H x W x 3`` uint8 of a clip at ``indices`` (all when None), in the order given, and its fps.

    Decodes a video only up to the last index, keeping the wanted frames alone in memory.

    Raises:
        MediaError: an index is past the end of the clip, or the clip is unreadable.
    """
    source_frames = FrameSource(clip_files(root, source))
    return source_frames.read(indices), source_frames.fps


def count_clip_frames(root: str | os.PathLike, source: str) -> int:
    """Number of frames of a clip (a video's frames are counted by ffmpeg)."""
    return len(FrameSource(clip_files(root, source)))


__all__ = ["NERSEMBLE_FRONTAL_CAMERA", "RAVDESS_EMOTIONS", "RavdessName", "VideoRecord", "clip_files",
           "count_clip_frames", "folder_videos", "load_dataset", "nersemble_videos", "parse_ravdess_name",
           "ravdess_videos", "read_clip_frames"]
