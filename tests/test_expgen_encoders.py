"""PoseEncoder3D / ReferenceEncoder2D: latent-grid shapes (checked against the Wan VAE), causality, errors."""

import pytest
import torch
from diffusers import AutoencoderKLWan

from expgen.backbone import TINY_VAE_CONFIG
from expgen.pose_encoder import PoseEncoder3D, latent_frames
from expgen.reference_encoder import ReferenceEncoder2D

pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: one thread beats two busy ones


@pytest.mark.parametrize("frames,height,width", [(1, 32, 32), (5, 32, 48), (9, 16, 24)])
def test_pose_features_match_vae_latent_grid(frames, height, width):
    torch.manual_seed(0)
    enc = PoseEncoder3D((4, 8, 8), out_channels=6)
    vae = AutoencoderKLWan(**TINY_VAE_CONFIG)
    video = torch.rand(2, frames, 3, height, width)
    with torch.no_grad():
        features = enc(video)
        latents = vae.encode(video.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    assert features.shape == (2, 6, latent_frames(frames), height // 8, width // 8)
    assert features.shape[2:] == latents.shape[2:]


def test_pose_encoder_is_causal_in_time():
    torch.manual_seed(0)
    enc = PoseEncoder3D((4, 8, 8), out_channels=6)
    video = torch.rand(1, 9, 3, 16, 16)
    changed = video.clone()
    changed[:, 5] = torch.rand(3, 16, 16)  # feature frame j sees input frames <= 4j
    with torch.no_grad():
        a, b = enc(video), enc(changed)
    assert torch.equal(a[:, :, :2], b[:, :, :2])
    assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-4


@pytest.mark.parametrize("shape,match", [((1, 6, 3, 16, 16), "1 \\+ 4k"), ((1, 5, 3, 12, 16), "multiples of 8"),
                                         ((1, 5, 1, 16, 16), "B x F x 3")])
def test_pose_encoder_rejects_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        PoseEncoder3D()(torch.rand(shape))


def test_reference_encoder_shape_and_errors():
    enc = ReferenceEncoder2D((4, 8, 8), out_channels=5)
    assert enc(torch.rand(3, 3, 32, 40)).shape == (3, 5, 4, 5)
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        enc(torch.rand(1, 1, 32, 32))
