"""The geometric generator's wide blur: the low-resolution shortcut matches the full Gaussian."""

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
