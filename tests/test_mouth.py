"""The geometric generator's mouth interior: teeth carried by the lips, the cavity between, a teeth proxy."""

import math

import torch

from expgen.generators.mouth import CAVITY_COLOR, TEETH_COLOR, MouthFrame, mouth_interior, paint_mouth

SIZE = 64


def lips(gap: float, cx: float = 32.0, cy: float = 40.0, width: float = 24.0, angle: float = 0.0) -> torch.Tensor:
    """``8 x 2`` inner lips (iBUG 60-67) of a mouth ``width`` wide whose lips are ``gap`` px apart at the middle."""
    xs = torch.tensor([-0.5, -0.25, 0.0, 0.25, 0.5, 0.25, 0.0, -0.25]) * width
    bulge = torch.tensor([0.0, 0.75, 1.0, 0.75, 0.0, 0.75, 1.0, 0.75]) * gap / 2
    ys = torch.where(torch.arange(8) < 5, -bulge, bulge)
    ys[0] = ys[4] = 0.0
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([cx + c * xs - s * ys, cy + s * xs + c * ys], -1)


def pixels() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    return torch.stack([x, y], -1)


def test_mouth_frame_round_trips_pixels_of_a_tilted_mouth():
    frame = MouthFrame.of(lips(6.0, angle=0.3)[None])
    s, v = frame.coords(pixels())
    torch.testing.assert_close(frame.point(s, v)[0], pixels(), atol=1e-4, rtol=0)
    corner = lips(6.0, angle=0.3)[4]
    s, v = frame.coords(corner.view(1, 1, 2))
    torch.testing.assert_close(torch.stack([s, v]).flatten(), torch.tensor([1.0, 0.0]), atol=1e-5, rtol=0)


def test_an_opening_mouth_carries_the_teeth_on_its_lips_with_the_cavity_between():
    """The reference's 8-px gap shows white upper teeth over grey lower teeth; the driver opens it to 20 px. Below
    the driven upper lip the output reads the upper teeth, above the lower lip the lower ones, and the 12 px
    between are cavity; the lips and everything outside stay the warp's."""
    reference = torch.full((3, SIZE, SIZE), 0.7)
    ref_lips = lips(8.0)
    y = pixels()[..., 1]
    middle = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    middle[:, 24:41] = True  # the mouth's middle columns
    reference[:, middle & (y > 36) & (y < 40)] = 1.0  # upper teeth
    reference[:, middle & (y > 40) & (y < 44)] = 0.4  # lower teeth
    driven = torch.stack([lips(20.0), lips(8.0), lips(4.0)])
    read, weights, depth = mouth_interior(pixels(), driven, ref_lips)
    grid = read / SIZE * 2 - 1
    sampled = torch.nn.functional.grid_sample(reference[None].expand(3, -1, -1, -1), grid, align_corners=False)
    warp = torch.full((3, 3, SIZE, SIZE), 0.7)
    out = paint_mouth(warp, sampled, weights, depth)
    col = 32
    assert out[0, 0, 32, col] > 0.95 and out[0, 0, 33, col] > 0.95  # 2-3 px under the upper lip (y = 30): teeth
    assert abs(float(out[0, 0, 48, col]) - 0.4) < 0.05  # 2 px above the lower lip (y = 50): lower teeth
    assert float(out[0, 0, 40, col]) < CAVITY_COLOR[0] + 0.01  # the middle: cavity, darkest there
    assert float(depth[0, 40, col]) > 0.9
    inside = weights[0].sum(0) > 0
    assert inside[30:51, col].sum() >= 18 and not inside[:28].any() and not inside[52:].any()
    assert (weights[1:] == 0).all()  # no wider than the reference's (or closing): the warp stays
    torch.testing.assert_close(out[1:], warp[1:])


def test_a_closed_lipped_reference_gets_a_teeth_proxy_under_the_upper_lip():
    ref_lips = lips(0.0)
    read, weights, depth = mouth_interior(pixels(), lips(16.0)[None], ref_lips)
    teeth, cavity = weights[0, 2], weights[0, 1]
    col = 32  # upper lip at y = 32, lower at 48; the proxy is 0.16 x 24 = 3.8 px tall
    assert teeth[33, col] > 0.9 and teeth[35, col] > 0.5 and teeth[38, col] == 0
    assert cavity[40, col] > 0.9 and weights[0, 0].max() == 0  # nothing of the closed reference is read
    assert teeth[33, 22] < teeth[33, col]  # the proxy fades towards the corners
    out = paint_mouth(torch.full((1, 3, SIZE, SIZE), 0.7), torch.zeros(1, 3, SIZE, SIZE), weights, depth)
    assert abs(float(out[0, 0, 33, col]) - TEETH_COLOR[0]) < 0.1


def test_a_turned_head_does_not_open_the_mouth():
    """A 20 degree turn foreshortens the driven mouth's width, not its gap: measured in the output against the
    mouth's width, the gap reads wider and a cavity would be drawn. Compared in the reference's own view
    (``opening_lips``: the turn undone) nothing is drawn; a mouth that really opens still is."""
    turn = math.cos(math.radians(20.0))
    ref_lips = lips(8.0)
    turned = lips(8.0, width=24.0 * turn)[None]
    assert mouth_interior(pixels(), turned, ref_lips)[1].sum() > 1.0  # the proportions read as an opening
    _, weights, _ = mouth_interior(pixels(), turned, ref_lips, opening_lips=ref_lips[None])
    assert weights.sum() == 0
    opened = lips(16.0, width=24.0 * turn)[None]
    _, weights, _ = mouth_interior(pixels(), opened, ref_lips, opening_lips=lips(16.0)[None])
    assert weights[0, 1, 40, 32] > 0.9  # the cavity in the middle of a mouth opened to 16 px
