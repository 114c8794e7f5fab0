"""Fixed splits: the clips, frames and pairs of a benchmark written down once, shipped with the package.

The paper (Sec. 4.1) evaluates on 20 RAVDESS and 80 NeRSemble videos without publishing the list; the files
here (``ravdess_paper.json``, ``nersemble_paper.json``, selected with ``--split paper``) are exp-bench's fixed
choice, each stating its selection rule in its ``rule`` field:

* **RAVDESS** — 20 video-only speech takes, one per actor of ``Actor_01`` .. ``Actor_20`` (10 male, 10 female),
  the eight emotions in turn, strong intensity except neutral; self: frame 0 then 16 frames at stride 4;
  cross: actor k drives actor k+1.
* **NeRSemble** — 20 participants x 4 sequences (``EMO-1-shout+laugh``, ``EMO-4-disgust+happy``, ``EXP-2-eyes``,
  ``SEN-10-port_strong_smokey``) of the frontal camera ``222200037``; self: frame 0 then 16 frames at
  stride 8; cross: participant i drives participant i+1 in the same sequence.

A split file (format ``exp-bench-split/1``) lists ``clips`` (``id``, ``video`` relative to the dataset root,
``identity``) and, per protocol, ``stride``, ``num_frames``, ``reference_frame`` and the ``items`` (self) or
``pairs`` (cross, ``{"driving": id, "reference": id}``). It holds no crop boxes: those are found on the user's
data by the first run and pinned by the manifest that run writes. Any file of this format can be given with
``--split PATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..datasets import VideoRecord, clip_files

SPLIT_FORMAT = "exp-bench-split/1"


@dataclass(frozen=True)
class ProtocolSplit:
    """One protocol of a split: frame sampling and the items (self: clip ids; cross: ``(driving, reference)``)."""

    stride: int
    num_frames: int
    reference_frame: int
    items: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Split:
    """A fixed split: ``clips`` by id and the two protocols; ``source`` names the file and its hash."""

    name: str
    dataset: str
    rule: tuple[str, ...]
    clips: dict[str, VideoRecord]
    protocols: dict[str, ProtocolSplit] = field(default_factory=dict)
    source: str = ""

    def protocol(self, protocol: str) -> ProtocolSplit:
        """The split of ``protocol`` (``self`` or ``cross``)."""
        if protocol not in self.protocols:
            raise ValueError(f"split {self.source} has no {protocol!r} protocol (it has {sorted(self.protocols)})")
        return self.protocols[protocol]

    def clip_ids(self, protocol: str) -> list[str]:
        """Ids of the clips ``protocol`` uses, in order of first use."""
        spec = self.protocol(protocol)
        return list(dict.fromkeys([*spec.items, *(i for pair in spec.pairs for i in pair)]))


def shipped_split_path(name: str, dataset: str) -> Path:
    """The file of a split shipped with the package, ``<dataset>_<name>.json`` (e.g. ``ravdess_paper.json``)."""
    path = Path(str(resources.files(__name__) / f"{dataset}_{name}.json"))
    if not path.is_file():
        shipped = sorted(p.name for p in Path(str(resources.files(__name__))).glob("*.json"))
        raise FileNotFoundError(f"no shipped split {name!r} for dataset {dataset!r}: the package holds {shipped}; "
                                "give a split file with --split PATH")
    return path


def _field(data: dict, key: str, where: str) -> object:
    if key not in data:
        raise ValueError(f"{where}: missing {key!r} (see expgen.bench.splits for the format)")
    return data[key]


def load_split(name_or_path: str | os.PathLike, dataset: str | None = None) -> Split:
    """A split by shipped name (``paper``, with ``dataset``) or from a file (a path ending in ``.json``).

    Raises:
        FileNotFoundError: no such file or shipped split.
        ValueError: not a split file, a dataset other than ``dataset``, or items naming unknown clips.
    """
    text = str(name_or_path)
    path = Path(text) if text.endswith(".json") or os.sep in text else None
    if path is None:
        if dataset is None:
            raise ValueError(f"--split {text}: give --dataset to pick the shipped split of a dataset")
        path = shipped_split_path(text, dataset)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    raw = path.read_bytes()
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path} is not an exp-bench split (format {SPLIT_FORMAT!r})")
    if dataset is not None and data.get("dataset") != dataset:
        raise ValueError(f"{path} is a split of {data.get('dataset')!r}, not of --dataset {dataset}")
    clips: dict[str, VideoRecord] = {}
    for entry in _field(data, "clips", str(path)):
        clip_id = str(_field(entry, "id", f"{path}: clip"))
        attributes = {k: str(v) for k, v in entry.items() if k not in ("id", "video", "identity")}
        clips[clip_id] = VideoRecord(clip_id, str(_field(entry, "video", f"{path}: clip {clip_id}")),
                                     str(_field(entry, "identity", f"{path}: clip {clip_id}")), attributes)
    protocols = {}
    for protocol in ("self", "cross"):
        if protocol not in data:
            continue
        spec = data[protocol]
        items = tuple(str(i) for i in spec.get("items", ()))
        pairs = tuple((str(p["driving"]), str(p["reference"])) for p in spec.get("pairs", ()))
        unknown = sorted({*items, *(i for pair in pairs for i in pair)} - set(clips))
        if unknown:
            raise ValueError(f"{path}: {protocol} names clips that are not in 'clips': {unknown}")
        same = [pair for pair in pairs if clips[pair[0]].identity == clips[pair[1]].identity]
        if same:
            raise ValueError(f"{path}: cross pairs of one identity: {same}")
        protocols[protocol] = ProtocolSplit(int(_field(spec, "stride", f"{path}: {protocol}")),
                                            int(_field(spec, "num_frames", f"{path}: {protocol}")),
                                            int(spec.get("reference_frame", 0)), items, pairs)
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return Split(str(data.get("name", path.stem)), str(data["dataset"]), tuple(data.get("rule", ())), clips,
                 protocols, f"{path.name} (sha256 {digest})")


def missing_files(split: Split, root: str | os.PathLike, protocol: str) -> list[str]:
    """The clips of ``protocol`` not found under ``root`` (a video, a frame folder or a frame pattern), as
    dataset-relative paths."""
    missing = []
    for clip_id in split.clip_ids(protocol):
        try:
            clip_files(root, split.clips[clip_id].source)
        except FileNotFoundError:
            missing.append(split.clips[clip_id].source)
    return missing


def validate_split(split: Split, root: str | os.PathLike, protocol: str) -> None:
    """Check that every clip ``protocol`` uses is on disk.

    Raises:
        FileNotFoundError: one message listing each missing file, and the fix.
    """
    if not Path(root).is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    missing = missing_files(split, root, protocol)
    if missing:
        listing = "\n  ".join(missing)
        raise FileNotFoundError(
            f"{len(missing)} of the {len(split.clip_ids(protocol))} files of split {split.source} ({protocol}) are "
            f"missing under {root}:\n  {listing}\nPoint --root at the {split.dataset} root holding these paths, "
            "fetch the missing files, or pass a split file without them (--split PATH).")


__all__ = ["SPLIT_FORMAT", "ProtocolSplit", "Split", "load_split", "missing_files", "shipped_split_path",
           "validate_split"]
