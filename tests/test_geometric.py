"""The geometric generator's wide blur: the low-resolution shortcut matches the full Gaussian."""

import pytest
import torch

from expgen.geometric import _gaussian_blur, _smooth


@pytest.mark.parametrize("sigma", [2.0, 12.0, 20.0, 41.0])
def test_smooth_matches_full_resolution_gaussian(sigma):
    h, w = 512, 512  # the default output size
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    mask = (((xx - 250) / 140) ** 2 + ((yy - 240) / 180) ** 2 < 1).float()  # a head-like silhouette
    flow = torch.stack([torch.sin(xx / 60), torch.cos(yy / 50)]) * 5 * mask
    x = torch.cat([flow, mask[None]])[None]
    exact, fast = _gaussian_blur(x, sigma), _smooth(x, sigma)
    err = (exact - fast).abs().amax(dim=(-2, -1)) / exact.abs().amax(dim=(-2, -1))
    assert err.max() < (1e-6 if sigma < 16 else 0.015), err  # about 1.2% at the image border
