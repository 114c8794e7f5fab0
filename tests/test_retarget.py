"""Retargeting (region, relative / absolute motion, expression scale) and whole-image output."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage import data

from expgen.animator import AnimateConfig, Animator
from exphead.head_model import HeadParams
from exphead.media import to_tensor
from exphead.tracking import CropBox, TrackerConfig
from exptransfer import Retargeting, driving_params


def _params(n: int, model, seed: int) -> HeadParams:
    g = torch.Generator().manual_seed(seed)
    p = HeadParams.zeros(n, model.num_betas, model.num_expression)
    p.expression[:, :10] = torch.randn(n, 10, generator=g)
    p.jaw_pose[:, 0] = torch.rand(n, generator=g) * 0.2
    p.head_pose = torch.randn(n, 3, generator=g) * 0.1
    p.transl = torch.tensor([0.0, 0.0, 0.8]) + torch.randn(n, 3, generator=g) * 0.01
    p.betas[:, :5] = torch.randn(1, 5, generator=g)
    return p


@pytest.fixture(scope="module")
def target(head_model):
    from exphead.personalized import PersonalizedHead

    p = _params(1, head_model, 0)
    return PersonalizedHead(head_model, p, torch.zeros(head_model.num_vertices, 3),
                            torch.zeros(1, int(head_model.face_mask.sum()), 3), None)


def test_relative_and_absolute_motion(target, head_model):
    drv = _params(5, head_model, 1)
    rel = driving_params(target, drv, retarget=Retargeting(expression_scale=0.5))
    ref = target.params
    assert torch.equal(rel.betas, ref.betas.expand(5, -1))
    assert torch.allclose(rel.expression, ref.expression + 0.5 * (drv.expression - drv.expression[:1]))
    rotation = lambda q: q.neck_pose + q.head_pose  # noqa: E731
    assert torch.allclose(rel.expression[0], ref.expression[0]) and torch.allclose(rotation(rel)[0], rotation(ref)[0])
    absolute = driving_params(target, drv, retarget=Retargeting(motion="absolute"))
    assert torch.equal(absolute.expression, drv.expression) and torch.equal(absolute.head_pose, drv.head_pose)
    # self-reenactment: motion from the reference frame's own track (frame 2): that frame is the reference itself
    from_frame = driving_params(target, drv, origin=drv.map(lambda v: v[2:3]))
    for name in ("expression", "jaw_pose", "transl"):
        assert torch.allclose(getattr(from_frame, name)[2], getattr(ref, name)[0], atol=1e-6), name
    assert torch.allclose(rotation(from_frame)[2], rotation(ref)[0], atol=1e-5)
    assert not torch.allclose(from_frame.expression[0], ref.expression[0])
    still_pose = driving_params(target, drv, retarget=Retargeting(region="expression"))
    assert torch.equal(still_pose.head_pose, ref.head_pose.expand(5, -1))
    assert torch.equal(still_pose.transl, ref.transl.expand(5, -1))
    still_face = driving_params(target, drv, retarget=Retargeting(region="pose"))
    assert torch.equal(still_face.expression, ref.expression.expand(5, -1))
    assert not torch.allclose(still_face.head_pose, ref.head_pose.expand(5, -1))
    with pytest.raises(ValueError, match="region"):
        Retargeting(region="nose")


@pytest.fixture(scope="module")
def plan(head_model, tmp_path_factory):
    from expgen.examples import default_driving_video

    video = default_driving_video(num_frames=6, size=192, path=tmp_path_factory.mktemp("d") / "d.mp4",
                                  model=head_model)
    cfg = AnimateConfig(size=96, fit_size=96, fit_steps=2, tracker=TrackerConfig(steps=30), show_progress=False,
                        expression_scale=2.0)
    animator = Animator(cfg, model=head_model)
    return animator, animator.prepare(data.astronaut(), str(video))


@pytest.mark.parametrize("region", ["lips", "eyes"])
def test_one_region_moves_and_the_rest_stays(plan, head_model, region):
    """Only the chosen region's pixels change; the other region and the head pose stay as in the portrait."""
    animator, p = plan
    frames = torch.cat([c.frames for c in Animator(replace(animator.config, animate=region), model=head_model)
                        .chunks(p)])
    change = (frames - p.reference).abs().mean(1)  # F x S x S
    lm = p.head.model.landmarks_of(p.head.frame(0).vertices)
    uv = p.camera.project(lm.to(p.camera.K))[0].round().long().clamp(0, 95)

    def around(ids):  # mean change in a window around landmarks
        x0, y0 = uv[ids].min(0).values - 3
        x1, y1 = uv[ids].max(0).values + 3
        return change[:, y0:y1, x0:x1].mean().item()

    lips, eyes = around(list(range(48, 68))), around(list(range(36, 48)))
    moving, still = (lips, eyes) if region == "lips" else (eyes, lips)
    assert moving > 3 * still and still < 0.01, (lips, eyes)


def test_pose_only_and_expression_scale_zero(plan, head_model):
    animator, p = plan
    still = torch.cat([c.frames for c in Animator(replace(animator.config, expression_scale=0.0, animate="expression"),
                                                  model=head_model).chunks(p)])
    assert (still - p.reference).abs().max() < 0.02  # nothing moves: the portrait itself (up to sampling)
    posed = torch.cat([c.frames for c in Animator(replace(animator.config, animate="pose"), model=head_model)
                       .chunks(p)])
    assert (posed - p.reference).abs().mean() > 0.01  # the head turns


def test_paste_back_is_seamless_and_keeps_the_background():
    image = data.astronaut()
    box = CropBox(150, 30, 220, 512, 512)
    crops = to_tensor(box.apply(image[None], 128)).expand(3, -1, -1, -1).clone()
    crops[1] = (crops[1] + 0.06).clamp(0, 1)  # a generator that drifted brighter
    out = box.paste(crops, image)
    assert out.shape == (3, 512, 512, 3)
    outside = np.ones((512, 512), bool)
    outside[30:250, 150:370] = False
    assert np.array_equal(out[:, outside], np.repeat(image[None], 3, 0)[:, outside])  # background untouched
    inner = (slice(70, 210), slice(190, 330))
    assert np.abs(out[0][inner].astype(float) - image[inner]).mean() < 6  # a copy resampled 220 -> 128 -> 220 px
    edge = out[1, 30:250, 368:372].astype(float)  # across the right edge of the box
    natural = np.abs(np.diff(image[30:250, 368:372].astype(float), axis=1)).mean()
    assert np.abs(np.diff(edge, axis=1)).mean() < natural + 3
    shifted = out[1][inner].astype(float).mean() - out[0][inner].astype(float).mean()
    assert abs(shifted) < 6  # the drift is matched back to the image's colours (+0.06 = 15 levels otherwise)


@pytest.mark.parametrize("chunk", [8, 2])
def test_self_reenactment_reproduces_the_reference_frame(head_model, tmp_path, chunk):
    """Self mode moves relative to the reference frame's own track, so that frame comes out as the reference
    itself; with ``chunk=2`` the reference frame (4) is not in the first chunk and is tracked on its own."""
    from expgen.examples import default_driving_video

    video = default_driving_video(num_frames=6, size=192, path=tmp_path / "d.mp4", model=head_model)
    cfg = AnimateConfig(size=96, fit_size=96, fit_steps=2, tracker=TrackerConfig(steps=30), show_progress=False,
                        smooth_pose=0.0, smooth_expression=0.0, mode="self", reference_frame=4, chunk=chunk)
    result = Animator(cfg, model=head_model).animate(None, str(video))
    departure = (result.frames - result.reference).abs().mean((1, 2, 3))  # measured 0.0000 / 0.0002 at frame 4
    assert departure[4] < 0.002 and (departure[[0, 1, 2, 3, 5]] > 0.01).all(), departure
