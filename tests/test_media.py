"""The one image reader (EXIF orientation, every Pillow mode to 8-bit RGB) and the streaming video reader/writer."""

import logging
import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from exphead.media import FrameSource, MediaError, VideoWriter, read_frames, read_image, write_image, write_video
from exphead.tracking import VideoTracker

PORTRAIT = data.astronaut()[:, 56:456]  # 512 x 400: not square, so a wrong orientation shows in the shape


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_exif_rotated_phone_portrait_is_read_upright(tmp_path):
    """Stored sideways with the EXIF tag "rotate 90° CW to display" (Orientation 6), as phones save portraits."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(PORTRAIT, k=1)))  # 400 x 512, the face turned left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    image = read_image(path)
    assert image.shape == PORTRAIT.shape
    assert np.abs(image.astype(float) - PORTRAIT).mean() < 3  # JPEG round trip only
    box = VideoTracker(size=128).locate(image[None], on_missing="fail")  # and a face is found on it
    assert 100 < box.left + box.side / 2 < 300


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "CMYK", "I;16"])
def test_every_pillow_mode_becomes_8_bit_rgb(tmp_path, mode, caplog):
    rgb = Image.fromarray(PORTRAIT)
    if mode == "RGBA":
        image = rgb.convert("RGBA")
        alpha = np.full(PORTRAIT.shape[:2], 255, np.uint8)
        alpha[:, :100] = 0  # a transparent band: composited on grey, with a warning
        image.putalpha(Image.fromarray(alpha))
        expected = PORTRAIT.copy()
        expected[:, :100] = 128
    elif mode == "LA":
        grey = rgb.convert("L")
        image = Image.merge("LA", [grey, Image.new("L", grey.size, 255)])
        expected = np.repeat(np.asarray(grey)[..., None], 3, 2)
    elif mode == "I;16":
        grey = np.asarray(rgb.convert("L")).astype(np.uint16)
        image = Image.fromarray(grey * 257)  # 16-bit: 255 -> 65535
        expected = np.repeat(grey[..., None], 3, 2).astype(np.uint8)
    elif mode == "CMYK":
        image = rgb.convert("CMYK")
        expected = np.asarray(image.convert("RGB"))
    else:
        image = rgb.convert(mode)
        expected = np.asarray(image.convert("RGB"))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _save(image, tmp_path / f"img{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    assert Image.open(path).mode == mode
    with caplog.at_level(logging.WARNING, logger="exphead.media"):
        out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == PORTRAIT.shape
    tolerance = 6 if mode == "CMYK" else 1  # JPEG
    assert np.abs(out.astype(float) - expected).mean() < tolerance
    assert ("composited on grey" in caplog.text) == (mode == "RGBA")
    if mode == "CMYK":
        assert np.abs(out.astype(float) - PORTRAIT).mean() < 8  # the right colours, not inverted ones


def test_broken_images_are_clear_errors(tmp_path):
    good = _save(Image.fromarray(PORTRAIT), tmp_path / "good.jpg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:2000])
    for path, message in ((truncated, "unreadable image"), (tmp_path / "none.png", "image not found"),
                          (tmp_path / "notes.txt", "not an image file")):
        if path.suffix == ".txt":
            path.write_text("hi")
        with pytest.raises(MediaError, match=message):
            read_image(path)


def test_video_streams_in_chunks_with_stride(tmp_path):
    frames = (np.arange(10)[:, None, None, None] * 20 + np.zeros((10, 32, 48, 3))).astype(np.uint8)
    with VideoWriter(tmp_path / "v.mp4", fps=10) as writer:
        writer.write(frames[:4])
        writer.write(frames[4:])
    source = FrameSource(tmp_path / "v.mp4", stride=2, max_frames=4)
    assert len(source) == 4 and source.fps == 5
    chunks = list(source.chunks(3))
    assert [len(c) for c in chunks] == [3, 1]
    grey = np.concatenate(chunks)[:, 16, 24, 0].astype(int)
    assert np.abs(grey - [0, 40, 80, 120]).max() <= 3  # frames 0, 2, 4, 6 after H.264
    assert np.array_equal(source.read([3, 1]), np.concatenate(chunks)[[3, 1]])
    with pytest.raises(MediaError, match="frame 12 asked, the source has 10"):
        FrameSource(tmp_path / "v.mp4").read([9, 12])


def test_failed_writes_leave_nothing(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "v.mp4") as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
        raise RuntimeError("killed in the middle")
    with pytest.raises(MediaError, match="no frames"), VideoWriter(tmp_path / "w.mp4"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    write_video(tmp_path / "odd.mp4", np.zeros((2, 17, 21, 3), np.uint8))  # odd sizes lose a row and a column
    assert read_frames(tmp_path / "odd.mp4")[0].shape == (2, 16, 20, 3)


def test_outputs_get_the_permissions_of_a_plain_open(tmp_path):
    umask = os.umask(0o022)
    try:
        image = write_image(tmp_path / "a.png", data.astronaut()[:64, :64])
        video = write_video(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    finally:
        os.umask(umask)
    assert oct(image.stat().st_mode & 0o777) == oct(video.stat().st_mode & 0o777) == "0o644"  # not mkstemp's 0o600
    assert np.array_equal(read_image(image), data.astronaut()[:64, :64])


def test_mtcnn_finds_the_faces_dlib_misses():
    """The camera-man (a 3/4 view in grey) defeats dlib's HOG detector; MTCNN's box then feeds the 68-point
    shape predictor (the fallback for paintings, drawings and statues), landmarks inside the face."""
    from exphead.tracking import DlibFaceDetector, MTCNNFaceDetector

    image = np.repeat(data.camera()[..., None], 3, 2)
    assert DlibFaceDetector(cnn_fallback=False, mtcnn_fallback=False).detect(image) == []
    (face,) = DlibFaceDetector(cnn_fallback=False).detect(image)
    mtcnn = MTCNNFaceDetector().detect(image)[0]
    offset = np.linalg.norm(face.five - mtcnn.five, axis=1)  # eyes, nose tip, mouth corners of the two models
    assert offset.mean() < 0.25 * (mtcnn.box[2] - mtcnn.box[0]), offset
