"""Gaze: reading the iris in drawn eyes, the eye rotation it means, its retargeting, and the generator's irises."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from expgen.generators.irises import REACH, IrisMaps, iris_maps, iris_slide, move_irises
from exphead.camera import Camera
from exphead.head_model import HeadParams
from exphead.rotations import axis_angle_to_matrix
from exphead.tracking.gaze import (
    EYE_RADIUS,
    LEFT_EYE,
    RIGHT_EYE,
    eye_yaw,
    fill_gaps,
    gaze_rotation,
    head_yaw,
    iris_offsets,
    iris_u,
)

SIZE, WIDTH = 128, 32.0  # image side; eye width (corner to corner), pixels
IRIS = 0.21  # drawn iris radius, eye widths
EYES = ((24.0, 60.0), (72.0, 60.0))  # (x of the image-left corner, y of the corners) of each eye


def eye_landmarks(opening: float = 12.0) -> np.ndarray:
    """``68 x 2`` landmarks: two level eyes ``WIDTH`` wide whose lids are ``opening`` px apart at their middle
    thirds (iBUG order, see :data:`RIGHT_EYE`); the other points, unused here, at the image centre."""
    marks = np.full((68, 2), SIZE / 2)
    for (x, y), ids in zip(EYES, (RIGHT_EYE, LEFT_EYE)):
        third = WIDTH / 3
        lids = [(x, y), (x + third, y - opening / 2), (x + 2 * third, y - opening / 2), (x + WIDTH, y),
                (x + 2 * third, y + opening / 2), (x + third, y + opening / 2)]
        marks[list(ids)] = lids  # image-left corner, upper lid left to right, image-right corner, lower lid back
    return marks


def eye_image(u: float, v: float, opening: float = 12.0) -> np.ndarray:
    """``SIZE x SIZE x 3`` float image: skin, two eye openings (the lids of :func:`eye_landmarks` as straight
    segments) of white sclera and a dark iris disk (radius ``IRIS`` eye widths) ``(u, v)`` eye widths from
    each eye's centre."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    image = np.full((SIZE, SIZE), 0.6)
    for x, y in EYES:
        du = np.abs(xs - (x + WIDTH / 2))
        half = np.clip(np.minimum(1.0, 3 * (WIDTH / 2 - du) / WIDTH), 0, None) * opening / 2  # lid height per column
        inside = (np.abs(ys - y) < half) & (du < WIDTH / 2)
        iris = np.hypot(xs - (x + WIDTH / 2 + u * WIDTH), ys - (y + v * WIDTH)) < IRIS * WIDTH
        image[inside] = 0.95
        image[inside & iris] = 0.15
    return np.repeat(image[..., None], 3, axis=-1)


def test_the_iris_is_found_where_it_was_drawn() -> None:
    truth = [(-0.15, 0.0), (0.0, 0.0), (0.12, 0.03), (0.2, -0.04)]
    frames = np.stack([(eye_image(u, v) * 255).astype(np.uint8) for u, v in truth])
    offsets = iris_offsets(frames, np.repeat(eye_landmarks()[None], len(truth), 0))
    assert offsets.shape == (4, 2, 2)
    for k, (u, v) in enumerate(truth):
        for eye in range(2):
            assert offsets[k, eye, 0].item() == pytest.approx(u, abs=0.03)
            assert offsets[k, eye, 1].item() == pytest.approx(v, abs=0.03)


def test_closed_eyes_and_missing_faces_are_unreadable_and_filled_from_their_neighbours() -> None:
    marks = np.stack([eye_landmarks(), eye_landmarks(1.0), np.full((68, 2), np.nan), eye_landmarks()])
    frames = np.stack([(eye_image(u, 0.0, o) * 255).astype(np.uint8) for u, o in ((0.1, 12), (0, 1), (0, 12),
                                                                                      (-0.1, 12))])
    offsets = iris_offsets(frames, marks)
    assert offsets[1:3].isnan().all() and offsets[[0, 3]].isfinite().all()
    filled = fill_gaps(offsets.nanmean(dim=1))
    assert filled[1, 0].item() == pytest.approx(offsets[0, :, 0].mean().item() * 2 / 3
                                                + offsets[3, :, 0].mean().item() / 3, abs=1e-9)
    assert fill_gaps(torch.full((3, 2), float("nan"))).eq(0).all()


def _posed_landmarks(head_yaw_angle: float = 0.0) -> tuple[torch.Tensor, Camera]:
    """``68 x 3`` world landmarks of the procedural head turned by ``head_yaw_angle`` about +y, and a camera."""
    from exphead.head_model import HeadModel

    model = HeadModel(None)
    p = HeadParams.zeros(1, model.num_betas, model.num_expression)
    p.head_pose[:, 1] = head_yaw_angle
    return model(p).landmarks[0].detach(), Camera.portrait(1, 256, 256)


def test_the_eye_model_turns_towards_the_iris_and_takes_the_heads_parallax_out() -> None:
    offsets = torch.tensor([[[0.1, 0.05], [0.14, 0.03]], [[-0.2, 0.0], [-0.2, 0.0]]], dtype=torch.float64)
    rotation = gaze_rotation(offsets)
    assert rotation[0, 1].item() == pytest.approx(math.asin(0.12 / EYE_RADIUS))
    assert rotation[0, 0].item() == pytest.approx(math.asin(0.04 / EYE_RADIUS))
    # the eye's forward axis (+z) turns towards +x (the subject's left), which the camera shows to the image right,
    # for an iris right of the eye's centre, and downwards (-y, image down) for an iris below it
    forward = axis_angle_to_matrix(rotation.float())[0] @ torch.tensor([0.0, 0.0, 1.0])
    assert forward[0] > 0 and forward[1] < 0
    # the head's yaw from the camera: the procedural head turned by 0.3 about +y (towards its left) reads +0.3,
    # which the camera shows as a turn to the image right
    for angle in (0.0, 0.3, -0.2):
        marks, camera = _posed_landmarks(angle)
        assert head_yaw(camera.world_to_camera(marks[None]))[0].item() == pytest.approx(angle, abs=0.03)
    centre, right = Camera.portrait(1, 128, 128).project(torch.tensor([[[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]]]))[0]
    assert right[0] > centre[0]
    # parallax: eyes that hold still in a turned head show their irises off centre; eyes that look back at the
    # camera show them centred; eye_yaw inverts iris_u
    head = torch.tensor([0.3, 0.3, -0.2], dtype=torch.float64)
    eye = torch.tensor([0.0, -0.3, 0.1], dtype=torch.float64)
    u = iris_u(eye, head)
    assert u[0].item() == pytest.approx(EYE_RADIUS * math.tan(0.3)) and u[1].item() == pytest.approx(0.0)
    torch.testing.assert_close(eye_yaw(u, head), eye)
    turned = gaze_rotation(torch.zeros(1, 2, 2, dtype=torch.float64), torch.tensor([0.25]))
    assert turned[0, 1].item() == pytest.approx(-0.25)  # a centred iris in a turned head looks at the camera


def test_the_slide_puts_the_iris_where_the_eyeball_shows_it_less_what_the_warp_carried() -> None:
    still, camera = _posed_landmarks(0.0)
    turned, _ = _posed_landmarks(0.3)
    centre = torch.tensor([0.05, -0.05])
    maps = IrisMaps(torch.zeros(4, 8, 8), torch.zeros(3, 8, 8), torch.zeros(2, 2), torch.zeros(2, 2), centre,
                    (-1.0, -1.0, 1.0, 1.0))
    zero = torch.zeros(1, 2)
    torch.testing.assert_close(iris_slide(zero, still[None], still, camera, maps), torch.zeros(1, 2), atol=1e-6,
                               rtol=0)
    own = eye_yaw(centre, head_yaw(camera.world_to_camera(still[None])))
    gaze = iris_slide(torch.tensor([[0.0, 0.2]]), still[None], still, camera, maps)
    assert gaze[0].tolist() == pytest.approx((iris_u(own + 0.2, torch.zeros(2)) - centre).tolist(), abs=0.01)
    assert gaze.min() > 0.07  # about R sin(0.2) = 0.079 towards the image right
    parallax = iris_slide(zero, turned[None], still, camera, maps)  # a head turned to the image right, eyes still
    assert parallax.min() > 0.05 and parallax.max() < EYE_RADIUS * math.tan(0.3) + 0.05


def _face_frame(marks: np.ndarray, u: float, size: int) -> np.ndarray:
    """``size x size x 3`` uint8 frame: skin, and in each eye polygon of the ``68 x 2`` landmarks white sclera with a
    dark iris ``u`` eye widths along the eye from its centre (radius ``IRIS`` eye widths)."""
    from skimage.draw import polygon

    image = np.full((size, size), 0.6)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for ids in (RIGHT_EYE, LEFT_EYE):
        eye = marks[list(ids)]
        rows, cols = polygon(eye[:, 1] - 0.5, eye[:, 0] - 0.5, image.shape)
        image[rows, cols] = 0.95
        axis = eye[3] - eye[0]
        width = np.linalg.norm(axis)
        centre = (eye[0] + eye[3]) / 2 + u * axis
        iris = np.hypot(xs[rows, cols] - centre[0], ys[rows, cols] - centre[1]) < IRIS * width
        image[rows[iris], cols[iris]] = 0.15
    return (np.repeat(image[..., None], 3, axis=-1) * 255).astype(np.uint8)


def test_the_tracker_reads_the_gaze_into_the_eye_poses_in_the_head() -> None:
    """Frames of the procedural head (frontal, and turned by 0.25 towards the image right) with drawn irises: the
    eye poses are the eyes' yaw in the head, parallax taken out, and only when the tracker is given the frames."""
    from exphead.head_model import HeadModel
    from exphead.tracking import TrackerConfig, VideoTracker

    size, turn = 256, 0.25
    tracker = VideoTracker(TrackerConfig(steps=40, show_progress=False), size, model=HeadModel(None))
    camera = Camera.portrait(1, size, size)
    frontal, turned = (camera.project(_posed_landmarks(a)[0][None])[0].numpy() for a in (0.0, turn))
    still_eyes = EYE_RADIUS * math.tan(turn)  # where the irises of eyes that hold still in the turned head show
    cases = ((frontal, 0.1), (turned, 0.1), (turned, still_eyes))
    frames = np.stack([_face_frame(m, u, size) for m, u in cases])
    marks = np.stack([m for m, _ in cases]).astype(np.float64)
    valid = np.ones(3, dtype=bool)
    without = tracker.fit(marks, valid, size, size).params
    assert without.leye_pose.eq(0).all() and without.reye_pose.eq(0).all()
    result = tracker.fit(marks, valid, size, size, frames=frames)
    params = result.params
    torch.testing.assert_close(params.leye_pose, params.reye_pose)
    head = head_yaw(result.camera.world_to_camera(tracker.head_model().posed_landmarks(params))).detach().double()
    assert head.tolist() == pytest.approx([0.0, turn, turn], abs=0.03)
    yaw = params.leye_pose[:, 1].double()
    assert yaw[0].item() == pytest.approx(math.asin(0.1 / EYE_RADIUS), abs=0.08)
    assert yaw[1].item() == pytest.approx(math.asin(0.1 * math.cos(turn) / EYE_RADIUS) - turn, abs=0.08)
    assert yaw[2].item() == pytest.approx(0.0, abs=0.08)


def test_retargeting_moves_the_gaze_with_the_expression() -> None:
    from exphead.personalized import PersonalizedHead
    from exptransfer.retarget import Retargeting, driving_params

    def params(yaw: list[float]) -> HeadParams:
        p = HeadParams.zeros(len(yaw), 10, 10)
        p.leye_pose[:, 1] = p.reye_pose[:, 1] = torch.tensor(yaw)
        return p

    target = PersonalizedHead.__new__(PersonalizedHead)
    target.params = params([0.05])
    driver = params([0.1, 0.3])
    yaw = lambda **kw: driving_params(target, driver, retarget=Retargeting(**kw)).leye_pose[:, 1]  # noqa: E731
    torch.testing.assert_close(yaw(), torch.tensor([0.05, 0.25]))  # relative: the target's own + the change
    torch.testing.assert_close(yaw(motion="absolute"), torch.tensor([0.1, 0.3]))
    torch.testing.assert_close(yaw(expression_scale=0.5), torch.tensor([0.05, 0.15]))
    for region in ("expression", "eyes"):
        torch.testing.assert_close(yaw(region=region), torch.tensor([0.05, 0.25]))
    for region in ("pose", "lips"):
        torch.testing.assert_close(yaw(region=region), torch.tensor([0.05, 0.05]))


def _dark_centroid(image: torch.Tensor, x0: float, y: float) -> float:
    """x of the darkness-weighted centroid (``u`` in eye widths) inside the eye at ``(x0, y)`` of a ``3 x H x W``
    image."""
    gray = image.mean(0)[int(y) - 5:int(y) + 5, int(x0) + 2:int(x0 + WIDTH) - 2]
    weight = (0.7 - gray).clamp_min(0)
    xs = torch.arange(int(x0) + 2, int(x0 + WIDTH) - 2, dtype=gray.dtype) + 0.5
    return float((weight.sum(0) * xs).sum() / weight.sum() - (x0 + WIDTH / 2)) / WIDTH


def test_move_irises_shifts_the_iris_inside_the_opening_and_nothing_else() -> None:
    reference = torch.from_numpy(eye_image(0.0, 0.0)).permute(2, 0, 1).float()
    maps = iris_maps(reference, torch.from_numpy(eye_landmarks()).float())
    assert maps is not None
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    grid = torch.stack([xs / SIZE * 2 - 1, ys / SIZE * 2 - 1], -1)[None].expand(3, -1, -1, -1)  # identity warp
    frames = reference[None].expand(3, -1, -1, -1).contiguous()
    out = move_irises(frames, grid, maps, torch.tensor([[0.0, 0.0], [0.15, 0.15], [-0.1, -0.1]]), reference)
    torch.testing.assert_close(out[0], reference)  # no gaze: untouched
    for k, shift in enumerate((0.0, 0.15, -0.1)):
        for x0, y in EYES:
            assert _dark_centroid(out[k], x0, y) == pytest.approx(shift, abs=0.03)
    # nothing changes beyond the lid margins (the opening mask is OPENING_SCALE = 1.6 times the 12 px opening) or
    # past the corners
    changed = ((out[1:] - frames[1:]).abs().amax(1) > 1e-6).any(0)
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    near = torch.zeros_like(changed)
    for x0, y in EYES:
        near |= ((ys - y).abs() < 1.6 * 6 + 1) & (xs > x0) & (xs < x0 + WIDTH)
    assert changed.any() and not (changed & ~near).any()
    # the white of the eye shows where the iris was: no second, dark iris left behind
    x0, y = EYES[0]
    assert out[1, :, int(y), int(x0 + WIDTH / 2 - 4)].mean() > 0.85
    # the tracker reads the moved iris as it reads one drawn there (the lids clip an iris near a corner, so its
    # visible part's centroid lies nearer the centre than the disk's)
    marks = torch.from_numpy(eye_landmarks())[None].expand(3, -1, -1)
    drawn = torch.stack([torch.from_numpy(eye_image(u, 0.0)).permute(2, 0, 1) for u in (0.0, 0.15, -0.1)])
    torch.testing.assert_close(iris_offsets(out, marks)[..., 0], iris_offsets(drawn, marks)[..., 0], atol=0.03,
                               rtol=0)


def test_an_iris_is_not_pushed_out_of_its_eye() -> None:
    reference = torch.from_numpy(eye_image(0.0, 0.0)).permute(2, 0, 1).float()
    maps = iris_maps(reference, torch.from_numpy(eye_landmarks()).float())
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    grid = torch.stack([xs / SIZE * 2 - 1, ys / SIZE * 2 - 1], -1)[None]
    out = move_irises(reference[None], grid, maps, torch.tensor([[0.9, 0.9]]), reference)
    furthest = torch.from_numpy(eye_image(REACH, 0.0)).permute(2, 0, 1).float()
    for x0, y in EYES:
        assert _dark_centroid(out[0], x0, y) == pytest.approx(_dark_centroid(furthest, x0, y), abs=0.02)


def test_closed_reference_eyes_give_no_iris_maps() -> None:
    reference = torch.from_numpy(eye_image(0.0, 0.0, opening=1.0)).permute(2, 0, 1).float()
    assert iris_maps(reference, torch.from_numpy(eye_landmarks(1.0)).float()) is None


def test_exp_animate_moves_the_portraits_irises_with_the_drivers_gaze(head_model) -> None:
    """The astronaut driven by herself with her irises slid along her eyes (frames: centre, centre, right, left,
    centre): mediapipe's iris points (a detector the tracker does not use) read the output's irises moving the
    same way; with ``--animate lips`` they stay."""
    pytest.importorskip("mediapipe")
    from skimage import data

    from expgen.animator import AnimateConfig, Animator
    from exphead.media import to_tensor, to_uint8
    from exphead.metrics.face_channels import face_channels
    from exphead.metrics.mediapipe_motion import MediaPipeMotionExtractor
    from exphead.tracking import TrackerConfig, detect_landmarks

    photo = data.astronaut()
    image = to_tensor(photo[None])[0]
    marks = torch.from_numpy(detect_landmarks(photo[None])[0][0]).float()
    maps = iris_maps(image, marks)
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    slides = torch.tensor([0.0, 0.0, 0.15, -0.15, 0.0])
    grid = torch.stack([xs / w * 2 - 1, ys / h * 2 - 1], -1)[None].expand(len(slides), -1, -1, -1)
    driving = to_uint8(move_irises(image[None].expand(len(slides), -1, -1, -1).contiguous(), grid, maps,
                                   slides[:, None].expand(-1, 2), image))
    extractor = MediaPipeMotionExtractor()
    gaze = lambda frames: face_channels(extractor.landmarks(frames)[0])["gaze"]  # noqa: E731
    driver = gaze(to_tensor(driving))
    assert driver[2] - driver[0] > 0.04 and driver[3] - driver[0] < -0.04  # mediapipe sees the driver's slides
    config = AnimateConfig(size=256, fit_size=128, fit_steps=5, show_progress=False, smooth_pose=0.0,
                           tracker=TrackerConfig(steps=40, rigid_fraction=0.5))
    for region in ("all", "lips"):
        result = Animator(replace(config, animate=region), model=head_model).animate(photo, driving)
        out = gaze(result.frames)
        moved = (out - out[0]).abs().max().item()
        if region == "all":
            assert out[2] - out[0] > 0.03 and out[3] - out[0] < -0.03, out.tolist()
        else:
            assert moved < 0.01, out.tolist()
