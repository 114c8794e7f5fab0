"""exp-bench dataset adapters: RAVDESS names, NeRSemble layouts, listed folders, frame reading, uncrop."""

import json

import numpy as np
import pytest
import torch

from expgen.bench.datasets import (
    folder_videos,
    load_dataset,
    nersemble_videos,
    parse_ravdess_name,
    ravdess_videos,
    read_clip_frames,
)
from expgen.bench.methods import uncrop
from exphead.media import to_tensor, write_image, write_video
from exphead.tracking.crop import CropBox

torch.set_num_threads(1)


def _clip(seed: int, frames: int = 3, size: int = 32) -> np.ndarray:
    """Frames of one flat grey each, ``20 + 50 t + seed`` (codec-proof: H.264 keeps flat frames)."""
    grey = (20 + 50 * np.arange(frames) + seed) % 256
    return np.broadcast_to(grey[:, None, None, None], (frames, size, size, 3)).astype(np.uint8)


def test_parse_ravdess_name_fields_and_errors():
    name = parse_ravdess_name("Actor_12/02-01-06-01-02-01-12.mp4")
    assert (name.modality, name.vocal_channel, name.emotion, name.intensity, name.statement, name.repetition,
            name.actor) == ("02", "01", "06", "01", "02", "01", "12")
    assert name.emotion_name == "fearful"
    assert name.take == "01-06-01-02-01-12"
    assert parse_ravdess_name("01-02-08-02-01-02-24").emotion_name == "surprised"
    for bad in ("02-01-09-01-01-01-01.mp4",  # emotion 09
                "02-01-01-02-01-01-01.mp4",  # neutral has no strong intensity
                "04-01-01-01-01-01-01.mp4",  # modality 04
                "02-01-03-01-01-01-25.mp4",  # actor 25
                "02-01-03-01-01-01.mp4",  # six fields
                "clip.mp4"):
        with pytest.raises(ValueError, match="RAVDESS|code|actor|neutral"):
            parse_ravdess_name(bad)


def test_ravdess_adapter_dedupes_modalities_and_skips_others(tmp_path):
    write_video(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4", _clip(0))  # full-AV
    write_video(tmp_path / "Actor_01" / "02-01-03-01-01-01-01.mp4", _clip(0))  # video-only, same take
    write_video(tmp_path / "Actor_01" / "02-02-05-02-02-02-01.mp4", _clip(1))  # song, angry, strong
    write_video(tmp_path / "nested" / "Actor_02" / "01-01-01-01-01-01-02.mp4", _clip(2))  # only full-AV
    (tmp_path / "Actor_02" / "03-01-01-01-01-01-02.wav").parent.mkdir(exist_ok=True)
    (tmp_path / "Actor_02" / "03-01-01-01-01-01-02.wav").write_bytes(b"RIFF")
    (tmp_path / "Actor_02" / "notes.mp4").write_text("not a RAVDESS name")
    records = ravdess_videos(tmp_path)
    assert [r.id for r in records] == ["01-01-01-01-01-01-02", "02-01-03-01-01-01-01", "02-02-05-02-02-02-01"]
    assert [r.identity for r in records] == ["Actor_02", "Actor_01", "Actor_01"]
    assert records[2].attributes["emotion_name"] == "angry" and records[2].attributes["vocal_channel"] == "02"
    assert records[0].source == "nested/Actor_02/01-01-01-01-01-01-02.mp4"
    assert [r.id for r in ravdess_videos(tmp_path, modalities=("01",))] == ["01-01-01-01-01-01-02",
                                                                            "01-01-03-01-01-01-01"]
    happy = load_dataset("ravdess", tmp_path, select={"emotion_name": ["happy", "neutral"], "vocal_channel": ["01"]})
    assert [r.id for r in happy] == ["01-01-01-01-01-01-02", "02-01-03-01-01-01-01"]
    with pytest.raises(ValueError, match="matches"):
        load_dataset("ravdess", tmp_path, select={"identity": ["Actor_09"]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no clips found .*Actor_XX"):
        ravdess_videos(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="root not found"):
        ravdess_videos(tmp_path / "missing")


def test_nersemble_layouts_and_frames(tmp_path):
    clips = {name: _clip(i, frames=4) for i, name in enumerate(("v2", "v2side", "v1", "flat"))}
    write_video(tmp_path / "017" / "sequences" / "EXP-1-head" / "images" / "cam_222200037.mp4", clips["v2"])
    write_video(tmp_path / "017" / "sequences" / "EXP-1-head" / "images" / "cam_220700191.mp4", clips["v2side"])
    for t, frame in enumerate(clips["v1"]):  # v1: one PNG per timestep and camera
        folder = tmp_path / "018" / "sequences" / "EMO-1-shout+laugh" / "timesteps" / f"frame_{t:05d}" / "images"
        write_image(folder / "cam_222200037.png", frame)
        write_image(folder / "cam_220700191.png", 255 - frame)
    write_video(tmp_path / "019" / "SEN-01" / "cam_222200037.mp4", clips["flat"])
    records = nersemble_videos(tmp_path)
    assert [(r.identity, r.attributes["sequence"], r.attributes["camera"]) for r in records] == [
        ("017", "EXP-1-head", "222200037"), ("018", "EMO-1-shout+laugh", "222200037"), ("019", "SEN-01", "222200037")]
    assert records[1].source == "018/sequences/EMO-1-shout+laugh/timesteps/*/images/cam_222200037.png"
    frames, _ = read_clip_frames(tmp_path, records[1].source, [3, 1])
    np.testing.assert_array_equal(frames, clips["v1"][[3, 1]])  # lossless PNG frames, in the order asked
    assert len(nersemble_videos(tmp_path, cameras=None)) == 5
    video, fps = read_clip_frames(tmp_path, records[0].source, [2])
    assert video.shape == (1, 32, 32, 3) and fps == 25.0
    assert np.abs(video[0].astype(int) - clips["v2"][2]).max() <= 2  # frame 2, not 1 or 3 (50 grey levels apart)


def test_folder_listing_csv_json_and_scan(tmp_path):
    for name in ("a", "b", "c"):
        write_video(tmp_path / "clips" / f"{name}.mp4", _clip(ord(name)))
    (tmp_path / "clips" / "videos.csv").write_text("video,identity,id,take\na.mp4,alice,A1,x\nb.mp4,bob,,y\n")
    records = folder_videos(tmp_path / "clips")
    assert [(r.id, r.source, r.identity, r.attributes) for r in records] == [
        ("A1", "a.mp4", "alice", {"take": "x"}), ("b", "b.mp4", "bob", {"take": "y"})]
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"videos": [{"video": "clips/c.mp4", "identity": "carol"}]}))
    (record,) = folder_videos(tmp_path, listing)
    assert (record.id, record.source, record.identity) == ("c", "clips/c.mp4", "carol")
    listing.write_text(json.dumps([{"video": "clips/zzz.mp4", "identity": "x"}]))
    with pytest.raises(FileNotFoundError, match="zzz"):
        folder_videos(tmp_path, listing)
    listing.write_text(json.dumps([{"video": "clips/c.mp4"}]))
    with pytest.raises(ValueError, match="identity"):
        folder_videos(tmp_path, listing)
    (tmp_path / "clips" / "videos.csv").unlink()
    write_video(tmp_path / "clips" / "dana" / "d1.mp4", _clip(9))
    scanned = folder_videos(tmp_path / "clips")
    assert [(r.id, r.identity) for r in scanned] == [("a", "a"), ("b", "b"), ("c", "c"), ("dana_d1", "dana")]


def test_uncrop_inverts_a_crop_reaching_outside_the_image():
    """A crop box partly outside the frame: crop (CropBox.apply) then uncrop gives the frame back inside."""
    yy, xx = np.mgrid[0:64, 0:64]
    frame = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)[None]  # smooth gradient
    box = CropBox(left=-8, top=10, side=48, height=64, width=64)
    crop = to_tensor(box.apply(frame, 96))  # up-sampled crop, 96 x 96
    fill = torch.zeros(3, 64, 64)
    back = uncrop(crop, box, 64, fill)
    inside = back[0, :, 11:57, 1:39]  # the box less its one-pixel rim (resampling blends the padding in)
    expected = to_tensor(frame)[0, :, 11:57, 1:39]
    assert (inside - expected).abs().max() < 3 / 255
    assert back[0, :, :10].abs().max() == 0 and back[0, :, 58:].abs().max() == 0  # outside the box: fill
    assert back[0, :, :, 40:].abs().max() == 0
