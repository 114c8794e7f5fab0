"""The geometric generator: its wide blur (the low-resolution shortcut matches the full Gaussian), the crop's padding,
its similarity flow, the mouth interior under head turns, and the chin's underside."""

import math
from dataclasses import replace

import pytest
import torch

from expgen.generators.filters import gaussian_blur, smooth


@pytest.mark.parametrize("sigma", [2.0, 12.0, 20.0, 41.0])
def test_smooth_matches_full_resolution_gaussian(sigma):
    h, w = 512, 512  # the default output size
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    mask = (((xx - 250) / 140) ** 2 + ((yy - 240) / 180) ** 2 < 1).float()  # a head-like silhouette
    flow = torch.stack([torch.sin(xx / 60), torch.cos(yy / 50)]) * 5 * mask
    x = torch.cat([flow, mask[None]])[None]
    exact, fast = gaussian_blur(x, sigma), smooth(x, sigma)
    err = (exact - fast).abs().amax(dim=(-2, -1)) / exact.abs().amax(dim=(-2, -1))
    assert err.max() < (1e-6 if sigma < 16 else 0.015), err  # about 1.2% at the image border


def test_similarity_flow_recovers_a_known_rotation_scale_and_shift():
    from expgen.generators.geometric import _similarity_flow

    h, w = 40, 50
    pix = torch.stack(torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")[::-1], -1)
    angle, scale, shift = 0.3, 1.1, torch.tensor([4.0, -2.5])
    a, b = scale * torch.cos(torch.tensor(angle)), scale * torch.sin(torch.tensor(angle))
    target = torch.stack([a * pix[..., 0] - b * pix[..., 1], b * pix[..., 0] + a * pix[..., 1]], -1) + shift
    flow = (target - pix)[None].expand(2, -1, -1, -1).clone()
    weight = torch.zeros(2, h, w)
    weight[0, 10:25, 15:35] = 1.0  # frame 0: a patch of head pixels; frame 1: none
    flow[0, :, :5] += 30.0  # pixels with zero weight (not head) must not pull the fit
    rigid = _similarity_flow(pix, flow, weight)
    assert torch.allclose(rigid[0], target - pix, atol=1e-3)  # the whole image follows the patch's motion
    assert rigid[1].abs().max() == 0  # no head visible: no rigid motion


def test_padding_of_the_crop_stays_put_and_is_never_read():
    """A crop box reaching 20 px above a photo: its top rows are padding. The padding of every output frame is the
    reference's, and the warp's reads stay inside the photo even where the flow points into the padding."""
    from expgen.generators.base import keep_padding
    from expgen.generators.geometric import GeometricGenerator
    from exphead.tracking import CropBox

    box = CropBox(left=-10, top=-20, side=100, height=200, width=300)
    assert box.inside(50) == (5.0, 10.0, 50.0, 50.0)
    assert CropBox(left=5, top=5, side=50, height=200, width=300).inside(100) == (0.0, 0.0, 100.0, 100.0)
    reference = torch.zeros(3, 50, 50)
    frames = torch.rand(2, 3, 50, 50)
    kept = keep_padding(frames, reference, box.inside(50))
    assert (kept[:, :, :10] == 0).all() and (kept[:, :, :, :5] == 0).all()
    torch.testing.assert_close(kept[:, :, 10:, 5:], frames[:, :, 10:, 5:])
    assert keep_padding(frames, reference, None) is frames

    h = w = 50
    pix = torch.stack(torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")[::-1], -1)
    flow = torch.zeros(1, h, w, 2)
    flow[..., 1] = -15.0  # every pixel reads 15 px higher up
    mask = torch.ones(1, 1, h, w)
    grid = GeometricGenerator()._grid(pix, flow, torch.zeros_like(flow), mask, (5.0, 10.0, 50.0, 50.0))
    read_y = (grid[..., 1] + 1) / 2 * h
    read_x = (grid[..., 0] + 1) / 2 * w
    assert read_y.min() >= 10.5 - 1e-4 and read_x.min() >= 5.5 - 1e-4  # inside the photo
    torch.testing.assert_close(read_y[0, 40], torch.full((w,), 40.5 - 15.0))  # unclamped where it can be
    still = GeometricGenerator()._grid(pix, torch.zeros_like(flow), torch.zeros_like(flow), mask,
                                       (5.3, 10.3, 49.6, 50.0))  # bounds inside pixels: no motion is no warp
    torch.testing.assert_close((still[0, 10:, 5:] + 1) / 2 * h, pix[10:, 5:])


def test_turning_the_head_draws_no_mouth_interior_and_opening_the_jaw_does(head_model, monkeypatch):
    """The astronaut's fitted mesh turned by +-20 degrees (yaw, pitch, roll; no expression): the generator compares
    the driven lips with the head's motion undone, so no cavity is drawn over her teeth (before: up to 58 % of a
    pixel's colour, a dark line across the teeth); the same turns with the jaw opened by 0.3 rad draw one."""
    import numpy as np
    from skimage import data

    import expgen.generators.geometric as geometric
    from expgen.animator import AnimateConfig, Animator
    from expgen.generators import GeneratorInputs
    from exphead.head_model import split_head_rotation
    from exphead.rotations import axis_angle_to_matrix, matrix_to_axis_angle
    from exphead.tracking.tracker import TrackerConfig
    from exptransfer import still_params, transfer

    animator = Animator(AnimateConfig(size=128, fit_size=128, fit_steps=5, show_progress=False,
                                      tracker=TrackerConfig(steps=40, rigid_fraction=0.5)), model=head_model)
    photo = data.astronaut()
    plan = animator.prepare(photo, np.stack([photo, photo]))
    coverage = []
    drawn = geometric.mouth_interior

    def record(*args):
        out = drawn(*args)
        coverage.append(out[1].sum(dim=1).amax(dim=(1, 2)))
        return out

    monkeypatch.setattr(geometric, "mouth_interior", record)
    turns = torch.zeros(6, 3)
    for k in range(3):
        turns[2 * k:2 * k + 2, k] = torch.tensor([-20.0, 20.0]) * (math.pi / 180)
    with torch.no_grad():
        still = transfer(plan.head, still_params(plan.head, 1), None)
        for jaw in (0.0, 0.3):
            params = still_params(plan.head, 6)
            rotation = axis_angle_to_matrix(turns) @ axis_angle_to_matrix(params.neck_pose + params.head_pose)
            params.neck_pose, params.head_pose = split_head_rotation(matrix_to_axis_angle(rotation))
            params.jaw_pose[:, 0] += jaw
            driven = transfer(plan.head, params, None)
            animator.generator(GeneratorInputs(
                plan.reference, plan.reference_normal, still.vertices[0], driven.vertices, driven.landmarks,
                head_model.faces, plan.camera, head_model.head_weight(), still.landmarks[0], None, None, None,
                plan.reference_marks))
    turned, opened = coverage
    assert turned.max() < 0.01, turned
    assert opened.min() > 0.5, opened


def test_the_chin_s_underside_takes_the_smooth_flow_and_no_longer_stretches(head_model, monkeypatch):
    """``chin_underside`` on the astronaut's fitted mesh: only below the lower lip, between the jaw points 6 and 10,
    near the chin, on surface the reference sees edge-on or not at all. Tilted back by 20 degrees, the warp spread
    those few reference pixels over several times their area (a seam under the chin; under a turn, a hard line at
    the chin's lower edge); taking the smooth flow there, the output reads them over about their own area."""
    import numpy as np
    import torch.nn.functional as F
    from skimage import data

    import expgen.generators.geometric as geometric
    from expgen.animator import AnimateConfig, Animator
    from expgen.generators import GeneratorInputs
    from exphead.head_model import split_head_rotation
    from exphead.render import interpolate, render_normal_depth
    from exphead.rotations import axis_angle_to_matrix, matrix_to_axis_angle
    from exptransfer import still_params, transfer

    animator = Animator(AnimateConfig(size=128, fit_size=128, fit_steps=5, show_progress=False,
                                      tracker=replace(AnimateConfig().tracker, steps=40, rigid_fraction=0.5)),
                        model=head_model)
    photo = data.astronaut()
    plan = animator.prepare(photo, np.stack([photo, photo]))
    faces, camera = head_model.faces, plan.camera
    with torch.no_grad():
        still = transfer(plan.head, still_params(plan.head, 1), None)
        vertices, marks = still.vertices[0], still.landmarks[0]
        chin = geometric.chin_underside(vertices, faces, camera, marks)
        points, marks_cam = camera.world_to_camera(vertices[None])[0], camera.world_to_camera(marks[None])[0]
        assert chin.min() >= 0 and chin.max() <= 1 and (chin > 0.5).sum() > 100
        margin = 0.15 * (marks_cam[10, 0] - marks_cam[6, 0])  # the soft edge and the head's slight tilt
        x, y = points[:, 0], points[:, 1]  # camera frame: x right, y down
        below = (y > marks_cam[57, 1] - margin) & (x > marks_cam[6, 0] - margin) & (x < marks_cam[10, 0] + margin)
        near = (points - marks_cam[8]).norm(dim=-1) < marks_cam[10, 0] - marks_cam[6, 0]
        assert chin[~(below & near)].max() < 1e-6  # nothing above the lower lip, beyond the jaw points, far back
        view = geometric.reference_view(vertices, faces, camera)
        assert chin[view > geometric.SEEN_SQUARELY].max() < 1e-6  # nothing the reference sees squarely
        seen = render_normal_depth(still.vertices, faces, camera)
        underside = (interpolate(chin[None, :, None], seen.fragments, faces)[..., 0] * seen.mask[:, 0] > 0.5).float()

        params = still_params(plan.head, 1)
        turn = torch.tensor([[-20.0 * math.pi / 180, 0.0, 0.0]])  # the face tilted up
        rotation = axis_angle_to_matrix(turn) @ axis_angle_to_matrix(params.neck_pose + params.head_pose)
        params.neck_pose, params.head_pose = split_head_rotation(matrix_to_axis_angle(rotation))
        driven = transfer(plan.head, params, None)
        grids = []
        grid = geometric.GeometricGenerator._grid

        def record(*args, **kwargs):
            grids.append(grid(*args, **kwargs))
            return grids[-1]

        monkeypatch.setattr(geometric.GeometricGenerator, "_grid", record)
        spread = {}
        for name, region in (("own flow", lambda *a: torch.zeros(len(vertices))), ("smooth", geometric.chin_underside)):
            monkeypatch.setattr(geometric, "chin_underside", region)
            animator.generator(GeneratorInputs(
                plan.reference, plan.reference_normal, vertices, driven.vertices, driven.landmarks, faces, camera,
                head_model.head_weight(), marks, None, None, None, plan.reference_marks))
            read = F.grid_sample(underside[:, None], grids[-1], mode="nearest", align_corners=False)
            spread[name] = float(read.sum() / underside.sum())
    assert spread["own flow"] > 4.0 and spread["smooth"] < 0.5 * spread["own flow"], spread
