"""The fixed splits shipped with exp-bench: their selection rules hold, they validate against the data on disk with
one error naming every missing file, and ``--split paper`` makes the manifest of a RAVDESS tree named like the
real one."""

import json
from collections import Counter

import numpy as np
import pytest

from expgen.bench.cli import main
from expgen.bench.datasets import parse_ravdess_name
from expgen.bench.protocols import Manifest
from expgen.bench.splits import load_split, missing_files, shipped_split_path, validate_split
from exphead.media import write_video

NERSEMBLE_SEQUENCES = {"EXP-1-head", "EXP-2-eyes", "EXP-3-cheeks+nose", "EXP-4-lips", "EXP-5-mouth",
                       "EXP-6-tongue-1", "EXP-7-tongue-2", "EXP-8-jaw-1", "EXP-9-jaw-2", "EMO-1-shout+laugh",
                       "EMO-2-surprise+fear", "EMO-3-angry+sad", "EMO-4-disgust+happy", "FREE",
                       "SEN-01-cramp_small_danger", "SEN-09-frown_events_bad", "SEN-10-port_strong_smokey"}


def test_ravdess_paper_split_follows_its_rule():
    split = load_split("paper", "ravdess")
    assert split.source.startswith("ravdess_paper.json (sha256") and split.rule
    clips = [split.clips[i] for i in split.protocol("self").items]
    assert len(clips) == 20
    names = [parse_ravdess_name(c.source) for c in clips]
    assert all(n.modality == "02" and n.vocal_channel == "01" and n.repetition == "01" for n in names)
    assert [c.source.split("/")[0] for c in clips] == [f"Actor_{k:02d}" for k in range(1, 21)]
    assert [n.actor for n in names] == [f"{k:02d}" for k in range(1, 21)]
    assert Counter(n.emotion_name for n in names) == {"neutral": 3, "calm": 3, "happy": 3, "sad": 3, "angry": 2,
                                                      "fearful": 2, "disgust": 2, "surprised": 2}
    assert all(n.intensity == ("01" if n.emotion == "01" else "02") for n in names)
    self_spec, cross = split.protocol("self"), split.protocol("cross")
    assert (self_spec.stride, self_spec.num_frames, self_spec.reference_frame) == (4, 16, 0)
    assert len(cross.pairs) == 20 and len({d for d, _ in cross.pairs}) == 20
    assert all(split.clips[d].identity != split.clips[r].identity for d, r in cross.pairs)


def test_nersemble_paper_split_follows_its_rule():
    split = load_split("paper", "nersemble")
    clips = [split.clips[i] for i in split.protocol("self").items]
    assert len(clips) == 80
    parts = [c.source.split("/") for c in clips]
    assert all(len(p) == 5 and p[1] == "sequences" and p[3] == "images" and p[4] == "cam_222200037.mp4"
               for p in parts)
    assert all(len(p[0]) == 3 and p[0].isdigit() for p in parts)
    assert Counter(p[0] for p in parts) == dict.fromkeys({p[0] for p in parts}, 4) and len({p[0] for p in parts}) == 20
    assert {p[2] for p in parts} <= NERSEMBLE_SEQUENCES and len({p[2] for p in parts}) == 4
    cross = split.protocol("cross")
    assert len(cross.pairs) == 80 and (cross.stride, cross.num_frames) == (8, 16)
    assert all(split.clips[d].identity != split.clips[r].identity for d, r in cross.pairs)
    assert all(split.clips[d].attributes["sequence"] == split.clips[r].attributes["sequence"] for d, r in cross.pairs)


def test_validation_lists_every_missing_file(tmp_path):
    split = load_split("paper", "nersemble")
    with pytest.raises(FileNotFoundError) as error:
        validate_split(split, tmp_path, "cross")
    message = str(error.value)
    assert message.startswith("80 of the 80 files of split nersemble_paper.json")
    assert all(clip.source in message for clip in split.clips.values())
    assert "--root" in message and "--split PATH" in message
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        validate_split(split, tmp_path / "nowhere", "self")


def test_split_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shipped split 'gold'.*ravdess_paper.json"):
        load_split("gold", "ravdess")
    with pytest.raises(ValueError, match="not of --dataset nersemble"):
        load_split(shipped_split_path("paper", "ravdess"), "nersemble")
    bad = tmp_path / "bad.json"
    data = json.loads(shipped_split_path("paper", "ravdess").read_text())
    data["cross"]["pairs"][0]["reference"] = data["cross"]["pairs"][0]["driving"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cross pairs of one identity"):
        load_split(bad)
    data["cross"]["pairs"][0]["reference"] = "02-01-01-01-01-01-99"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not in 'clips'.*01-99"):
        load_split(bad)
    bad.write_text(json.dumps({"format": "exp-bench-manifest/1"}))
    with pytest.raises(ValueError, match="not an exp-bench split"):
        load_split(bad)


@pytest.fixture(scope="module")
def ravdess_paper_tree(tmp_path_factory):
    """The 20 files of the RAVDESS paper split, each 66 flat grey 32 x 32 frames (codec-proof)."""
    root = tmp_path_factory.mktemp("ravdess_paper")
    split = load_split("paper", "ravdess")
    for k, clip in enumerate(split.clips.values()):
        grey = (k * 11 + np.arange(66) * 3) % 256
        write_video(root / clip.source, np.broadcast_to(grey[:, None, None, None], (66, 32, 32, 3)).astype(np.uint8))
    return root


def test_paper_split_makes_the_manifest_and_names_missing_files(ravdess_paper_tree, tmp_path, capsys):
    out = tmp_path / "self.json"
    common = ["--dataset", "ravdess", "--root", str(ravdess_paper_tree), "--split", "paper", "--size", "32",
              "--crop", "full"]
    assert main(["manifest", *common, "--protocol", "self", "--out", str(out)]) == 0
    manifest = Manifest.load(out)
    assert len(manifest.items) == 20 and manifest.split.startswith("paper: ravdess_paper.json")
    assert all(i.reference.frames == [0] and i.driving.frames == list(range(4, 65, 4)) for i in manifest.items)
    assert manifest.items[0].driving.video == "Actor_01/02-01-01-01-01-01-01.mp4"
    assert main(["manifest", *common, "--protocol", "cross", "--out", str(tmp_path / "cross.json")]) == 0
    cross = Manifest.load(tmp_path / "cross.json")
    assert cross.items[0].id == "02-01-01-01-01-01-01__02-01-02-02-02-01-02"
    assert cross.items[0].driving.frames == list(range(0, 61, 4))
    # files missing on disk: one error listing each of them, and no manifest
    split = load_split("paper", "ravdess")
    gone = [split.clips[i].source for i in list(split.clips)[3:5]]
    for source in gone:
        (ravdess_paper_tree / source).rename(ravdess_paper_tree / f"{source}.bak")
    try:
        assert missing_files(split, ravdess_paper_tree, "self") == gone
        with pytest.raises(FileNotFoundError, match="2 of the 20 files") as error:
            validate_split(split, ravdess_paper_tree, "self")
        assert all(source in str(error.value) for source in gone)
        capsys.readouterr()
        assert main(["manifest", *common, "--protocol", "self", "--out", str(tmp_path / "none.json")]) == 2
        err = capsys.readouterr().err
        assert "2 of the 20 files of split ravdess_paper.json" in err and all(source in err for source in gone)
        assert not (tmp_path / "none.json").exists()
    finally:
        for source in gone:
            (ravdess_paper_tree / f"{source}.bak").rename(ravdess_paper_tree / source)
