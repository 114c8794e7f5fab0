"""2D-convolutional reference encoder over the reference normal map N^R (paper Sec. 3.3).

Maps ``B x 3 x H x W`` to ``B x C x H/8 x W/8``, the latent grid of the VAE, so its features can be
joined channel-wise with the VAE latent of the reference image and patchified like it. Layout as in
diffusers' ``ControlNetConditioningEmbedding`` (conv, SiLU, three stride-2 convs, conv).
"""

from __future__ import annotations

from torch import Tensor, nn

from expgen.pose_encoder import SPATIAL_FACTOR


class ReferenceEncoder2D(nn.Module):
    """``B x 3 x H x W`` reference normal map in ``[0, 1]`` -> ``B x C x H/8 x W/8`` features.

    The input is the image encoding ``(n + 1) / 2`` of camera-space unit normals (background 0),
    mapped back to ``[-1, 1]`` inside.

    Args:
        channels: widths of the three stride-2 stages.
        out_channels: feature channels ``C``.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), out_channels: int = 128) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"reference encoder needs 3 stage widths (8x = 2^3 downsampling), got {channels}")
        c0, c1, c2 = channels
        self.conv_in = nn.Conv2d(3, c0, 3, stride=2, padding=1)
        self.down1 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.conv_out = nn.Conv2d(c2, out_channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, normal: Tensor) -> Tensor:
        """``B x 3 x H x W`` in ``[0, 1]`` -> ``B x C x H/8 x W/8``."""
        if normal.ndim != 4 or normal.shape[1] != 3:
            raise ValueError(f"reference_normal must be B x 3 x H x W, got shape {tuple(normal.shape)}")
        if normal.shape[2] % SPATIAL_FACTOR or normal.shape[3] % SPATIAL_FACTOR:
            raise ValueError(
                f"reference_normal is {normal.shape[2]}x{normal.shape[3]}; sides must be multiples of {SPATIAL_FACTOR}"
            )
        x = self.act(self.conv_in(normal * 2.0 - 1.0))
        x = self.act(self.down1(x))
        x = self.act(self.down2(x))
        return self.conv_out(x)

    def reset_parameters(self) -> None:
        """Default (Kaiming-uniform) initialisation of every convolution."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
