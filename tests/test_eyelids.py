"""The geometric generator's eyelids: closure from the lid landmarks, lid skin over a closing eye."""

import torch

from expgen.generators.eyelids import (
    CLOSED_OPENNESS,
    close_eyelids,
    eye_closure,
    eye_maps,
    eye_openness,
    eye_squeeze,
    lid_cover,
)


def _landmarks(opening: float, size: float = 64.0) -> torch.Tensor:
    """68 x 3 landmarks (pixels, z = 0) with two 12-px-wide eyes at y = 30 whose lids are ``opening`` x width apart."""
    marks = torch.zeros(68, 3)
    for first, cx in ((36, 20.0), (42, 44.0)):
        half = 6.0 * opening
        xs = (cx - 6, cx - 2, cx + 2, cx + 6, cx + 2, cx - 2)
        ys = (30.0, 30 - half, 30 - half, 30.0, 30 + half, 30 + half)
        for i, (x, y) in enumerate(zip(xs, ys)):
            marks[first + i, :2] = torch.tensor([x, y])
    return marks


def test_closure_runs_from_the_reference_opening_to_closed():
    reference = _landmarks(0.3)
    assert torch.allclose(eye_openness(reference), torch.tensor([0.3, 0.3]), atol=1e-5)
    driven = torch.stack([_landmarks(0.3), _landmarks(0.4), _landmarks((0.3 + CLOSED_OPENNESS) / 2),
                          _landmarks(CLOSED_OPENNESS), _landmarks(0.0)])
    expected = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0])[:, None].expand(5, 2)
    torch.testing.assert_close(eye_closure(driven, reference), expected, atol=1e-5, rtol=0)
    assert (eye_closure(driven, _landmarks(0.05)) == 0).all()  # a reference with closed eyes: no eyelid


def test_the_lid_covers_only_what_the_warp_left_open():
    """Driven lids at half the reference's opening: the warp shows the eye squeezed to 1/2 (``s = 0.5``); the closure
    asks for ``1 - c`` of the reference's opening, so the lid covers ``1 - (1 - c) / (1 - s)`` of what is left."""
    reference, half = _landmarks(0.3), _landmarks(0.15)
    squeeze = eye_squeeze(half[None], reference)
    torch.testing.assert_close(squeeze, torch.full((1, 2), 0.5), atol=1e-5, rtol=0)
    c = eye_closure(half[None], reference)  # (0.3 - 0.15) / (0.3 - 0.05) = 0.6
    torch.testing.assert_close(c, torch.full((1, 2), 0.6), atol=1e-5, rtol=0)
    cover = lid_cover(c, squeeze)
    torch.testing.assert_close(cover, torch.full((1, 2), 0.2), atol=1e-5, rtol=0)
    torch.testing.assert_close((1 - squeeze) * (1 - cover), 1 - c)  # what stays visible: 1 - c of the reference's
    closed = _landmarks(CLOSED_OPENNESS)[None]
    assert lid_cover(eye_closure(closed, reference), eye_squeeze(closed, reference)).eq(1).all()
    assert lid_cover(torch.zeros(1, 2), torch.zeros(1, 2)).eq(0).all()
    assert (eye_squeeze(half[None], _landmarks(0.05)) == 0).all()  # a reference with closed eyes: nothing squeezed


def test_a_closing_lid_covers_the_eye_with_skin_from_the_top():
    """A dark eye (ellipse) on skin; identity warp. Open: nothing changes. Half closed: the upper half of the eye
    turns to skin, the lower half stays dark. Closed: the whole eye is skin but for the lash line."""
    size = 64
    skin = torch.tensor([0.8, 0.6, 0.5])[:, None, None]
    image = skin.expand(3, size, size).clone()
    y, x = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    eye = ((x - 20) / 6) ** 2 + ((y - 30) / 1.8) ** 2 <= 1  # the right eye's opening (lids 0.3 x 12 px apart)
    image[:, eye] = 0.1
    marks = _landmarks(0.3)
    maps = eye_maps(image, marks[:, :2])
    torch.testing.assert_close(maps.skin[:, 30, 20], skin[:, 0, 0], atol=0.02, rtol=0)  # filled from the skin
    base = torch.stack(torch.meshgrid(torch.linspace(-1, 1, size + 1)[:-1] + 1 / size,
                                      torch.linspace(-1, 1, size + 1)[:-1] + 1 / size, indexing="ij")[::-1], -1)
    grid = base[None].expand(3, -1, -1, -1)
    frames = image[None].expand(3, -1, -1, -1)
    closure = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    out = close_eyelids(frames, grid, maps, closure)
    assert torch.allclose(out[0], image, atol=1e-5)  # open: unchanged
    upper, lower = eye & (y < 29.5), eye & (y > 30.5)
    dark = lambda frame, region: float(frame[:, region].mean())  # noqa: E731
    assert dark(out[1], upper) > 0.5 and dark(out[1], lower) < 0.2, (dark(out[1], upper), dark(out[1], lower))
    lash = (out[2].mean(0) < 0.45) & eye
    assert dark(out[2], eye & ~lash) > 0.55 and lash.sum() < 0.35 * eye.sum(), (dark(out[2], eye & ~lash), lash.sum())
    assert lash.any()  # a closed lid shows its lash line
    squeezed = close_eyelids(frames[1:2], grid[:1], maps, closure[1:2], squeeze=torch.full((1, 2), 0.375))
    skin_share = lambda frame: float(((frame - image).abs().amax(0) > 0.2)[eye].float().mean())  # noqa: E731
    # c = 0.5 after a squeeze of 0.375: the lid covers 1 - 0.5 / 0.625 = 0.2 of the opening, not half of it
    shares = skin_share(squeezed[0]), skin_share(out[1])  # measured 0.22, 0.50
    assert 0.1 < shares[0] < 0.32 and 0.4 < shares[1] < 0.6, shares
    away = torch.ones(size, size, dtype=torch.bool)
    away[22:39, 10:55] = False  # both eyes (the left one has no dark opening here, but gets its lid and lashes)
    assert (out[:, :, away] - image[:, away]).abs().max() < 1e-5  # nothing moves away from the eyes
