"""3D-convolutional pose encoder over the driving normal maps N^D_{1:F} (paper Sec. 3.3).

The encoder maps a normal-map video to a feature video on the latent grid of Wan's causal VAE:
space is downsampled by 8 and time as the VAE does it, ``F = 1 + 4k`` frames -> ``1 + k`` feature
frames, the first feature frame depending on the first input frame only. The transformer then
patchifies these features like the latents (``ExpPortraitTransformer.pose_patch_embedding``).

Causality in time comes from diffusers' ``WanCausalConv3d`` (zero padding in front only), the
same convolution the Wan VAE uses; the layout (conv, SiLU, strided convs, conv) follows
diffusers' ``ControlNetConditioningEmbedding``.
"""

from __future__ import annotations

from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
from torch import Tensor, nn

SPATIAL_FACTOR = 8
TEMPORAL_FACTOR = 4


def check_normal_video(normals: Tensor, name: str = "driving_normals") -> None:
    """Raise ``ValueError`` unless ``normals`` is ``B x F x 3 x H x W`` with ``F = 1 + 4k``, ``H, W % 8 == 0``."""
    if normals.ndim != 5 or normals.shape[2] != 3:
        raise ValueError(f"{name} must be B x F x 3 x H x W, got shape {tuple(normals.shape)}")
    f, h, w = normals.shape[1], normals.shape[3], normals.shape[4]
    if (f - 1) % TEMPORAL_FACTOR != 0:
        raise ValueError(f"{name} has {f} frames; the causal VAE needs F = 1 + 4k (e.g. {1 + (f - 1) // 4 * 4})")
    if h % SPATIAL_FACTOR or w % SPATIAL_FACTOR:
        raise ValueError(f"{name} is {h}x{w}; height and width must be multiples of {SPATIAL_FACTOR}")


class PoseEncoder3D(nn.Module):
    """Causal 3D-conv encoder: ``B x F x 3 x H x W`` normal maps -> ``B x C x (1 + (F-1)/4) x H/8 x W/8``.

    Input normal maps use the image encoding ``(n + 1) / 2`` in ``[0, 1]`` of camera-space unit
    normals (background pixels 0); they are mapped back to ``[-1, 1]`` inside.

    Args:
        channels: widths of the three stages; stage 0 halves space, stages 1 and 2 halve space and time.
        out_channels: feature channels ``C`` handed to the transformer's pose patch embedding.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), out_channels: int = 128) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"pose encoder needs 3 stage widths (8x = 2^3 downsampling), got {channels}")
        c0, c1, c2 = channels
        self.conv_in = WanCausalConv3d(3, c0, 3, stride=(1, 2, 2), padding=1)
        self.down1 = WanCausalConv3d(c0, c1, 3, stride=(2, 2, 2), padding=1)
        self.down2 = WanCausalConv3d(c1, c2, 3, stride=(2, 2, 2), padding=1)
        self.conv_out = WanCausalConv3d(c2, out_channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, normals: Tensor) -> Tensor:
        """``B x F x 3 x H x W`` in ``[0, 1]`` -> ``B x C x (1 + (F-1)/4) x H/8 x W/8``."""
        check_normal_video(normals)
        x = normals.permute(0, 2, 1, 3, 4) * 2.0 - 1.0
        x = self.act(self.conv_in(x))
        x = self.act(self.down1(x))
        x = self.act(self.down2(x))
        return self.conv_out(x)

    def reset_parameters(self) -> None:
        """Default (Kaiming-uniform) initialisation of every convolution."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                m.reset_parameters()


def latent_frames(num_frames: int) -> int:
    """Frames of the causal VAE latent (and of the pose features) for ``num_frames = 1 + 4k`` frames."""
    return 1 + (num_frames - 1) // TEMPORAL_FACTOR


__all__ = ["PoseEncoder3D", "check_normal_video", "latent_frames", "SPATIAL_FACTOR", "TEMPORAL_FACTOR"]
