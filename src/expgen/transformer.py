"""The ExpPortrait denoiser: diffusers' Wan DiT conditioned on normal maps and a reference (paper Sec. 3.3).

``ExpPortraitTransformer`` *is* a ``WanTransformer3DModel`` (same blocks, same state-dict keys, so a
Wan 2.1 text-to-video checkpoint loads into it unchanged) with three additions:

1. **Driving normals N^D_{1:F}** -> ``PoseEncoder3D`` (latent grid) -> ``pose_patch_embedding``
   (a ``Conv3d`` with kernel = stride = patch size, like the latent patchifier). Its tokens are
   *added* to the patchified tokens of ``z_t`` as in Wan-Animate. This is the paper's "concatenate
   with the patchified tokens": channel-concatenating pose features to ``z_t`` before the linear
   patch embedding is exactly ``W_z z + W_p p``, i.e. the same map with a separate ``W_p``; the
   addition keeps the pretrained ``patch_embedding`` untouched and the sequence length unchanged.
2. **Reference appearance** (VAE latent of I_R and ``ReferenceEncoder2D`` features of N^R) ->
   reference tokens ``patch_embedding(z_R) + reference_patch_embedding(f_R)`` + 2D sin-cos positions,
   fed through Wan's own image-conditioning branch (``condition_embedder.image_embedder`` and the
   ``add_k_proj``/``add_v_proj`` cross-attention of every block, the branch Wan 2.1 I2V uses for CLIP
   tokens). Every video token attends to all reference tokens: appearance is not pixel-aligned with
   the driving frames (the head moves), so attention, not addition, carries it; the reference
   normal features in the keys let a token match its driving normal to the reference geometry.
   A prepended reference frame (Wan-Animate, VACE) would instead change every token's
   self-attention softmax at step 0 and lengthen the sequence by one latent frame.
3. **No text.** The cross-attention context is a learned null context ``1 x 512 x text_dim``
   initialised to zeros (Wan pads every prompt with zeros to 512 tokens, so this is the all-padding
   prompt); no T5 runs. 512 is fixed by ``WanAttnProcessor``, which splits the last 512 context
   tokens off as text whenever the image branch exists. A precomputed text embedding can still be
   passed as ``encoder_hidden_states``.

Zero initialisation: ``pose_patch_embedding`` and every block's ``add_v_proj`` start at zero, so at
step 0 the output equals the bare Wan forward on ``z_t`` with the same context, bit for bit.

Use: ``conditions = model.encode_conditions(N^D, z_R, N^R)`` (independent of ``z_t`` and ``t``, so
sampling encodes them once), then ``model(z_t, t, conditions).sample``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_2d_sincos_pos_embed
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from expgen.pose_encoder import PoseEncoder3D
from expgen.reference_encoder import ReferenceEncoder2D

TEXT_CONTEXT_LENGTH = 512

# Keys of ExpPortraitTransformer's config that a Wan checkpoint does not carry.
CONDITION_CONFIG_KEYS = (
    "pose_encoder_channels",
    "pose_encoder_out_channels",
    "reference_encoder_channels",
    "reference_encoder_out_channels",
    "null_context_trainable",
)


@dataclass
class ConditionTokens(BaseOutput):
    """Encoded conditions: ``pose`` ``B x D x f x h x w`` patch-embedded pose features (added to the
    patchified ``z_t``), ``reference`` ``B x L x D`` reference tokens (before ``image_embedder``)."""

    pose: Tensor
    reference: Tensor


@dataclass
class ExpPortraitTransformerOutput(BaseOutput):
    """``sample``: ``B x C x f x h x w`` prediction (velocity for flow matching, noise for ε)."""

    sample: Tensor


class ExpPortraitTransformer(WanTransformer3DModel):
    """Wan DiT with pose tokens added to the latent tokens and reference tokens in cross-attention.

    Backbone arguments are Wan's (``WanTransformer3DModel``); ``image_dim`` and ``added_kv_proj_dim``
    are derived (``= inner_dim``) for the reference branch. Sizes of the two encoders are flat keys.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
        pose_encoder_channels: tuple[int, ...] = (16, 32, 64),
        pose_encoder_out_channels: int = 128,
        reference_encoder_channels: tuple[int, ...] = (16, 32, 64),
        reference_encoder_out_channels: int = 128,
        null_context_trainable: bool = True,
    ) -> None:
        inner_dim = num_attention_heads * attention_head_dim
        patch_size = tuple(patch_size)
        if patch_size[0] != 1:
            raise ValueError(f"patch_size {patch_size}: the single-frame reference needs a temporal patch of 1")
        if inner_dim % 4:
            raise ValueError(f"inner_dim {inner_dim} must be a multiple of 4 for 2D sin-cos reference positions")
        # 1.-4. Wan's layers. The parent's @register_to_config is bypassed (``__wrapped__``) so the
        # derived image_dim / added_kv_proj_dim stay out of our config.
        WanTransformer3DModel.__init__.__wrapped__(
            self,
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=inner_dim,
            added_kv_proj_dim=inner_dim,
            rope_max_seq_len=rope_max_seq_len,
        )

        # 5. Pose condition: normal-map video -> latent-grid features -> patch tokens (zero-init)
        self.pose_encoder = PoseEncoder3D(tuple(pose_encoder_channels), pose_encoder_out_channels)
        self.pose_patch_embedding = nn.Conv3d(
            pose_encoder_out_channels, inner_dim, kernel_size=patch_size, stride=patch_size
        )

        # 6. Reference condition: N^R features patchified like the reference latent
        self.reference_encoder = ReferenceEncoder2D(tuple(reference_encoder_channels), reference_encoder_out_channels)
        self.reference_patch_embedding = nn.Conv3d(
            reference_encoder_out_channels, inner_dim, kernel_size=patch_size, stride=patch_size
        )

        # 7. Null text context
        self.null_context = nn.Parameter(
            torch.zeros(1, TEXT_CONTEXT_LENGTH, text_dim), requires_grad=null_context_trainable
        )
        self.reset_condition_parameters()

    def condition_parameter_names(self) -> list[str]:
        """State-dict keys of the layers a Wan text-to-video checkpoint does not contain."""
        prefixes = ("pose_encoder.", "pose_patch_embedding.", "reference_encoder.", "reference_patch_embedding.",
                    "condition_embedder.image_embedder.", "null_context")
        block_parts = (".attn2.add_k_proj.", ".attn2.add_v_proj.", ".attn2.norm_added_k.")
        return [k for k in self.state_dict()
                if k.startswith(prefixes) or (k.startswith("blocks.") and any(p in k for p in block_parts))]

    @torch.no_grad()
    def reset_condition_parameters(self) -> None:
        """Initialise the new layers: encoders default, ``pose_patch_embedding`` and ``add_v_proj`` zero."""
        self.pose_encoder.reset_parameters()
        self.reference_encoder.reset_parameters()
        self.reference_patch_embedding.reset_parameters()
        self.pose_patch_embedding.weight.zero_()
        self.pose_patch_embedding.bias.zero_()
        for m in self.condition_embedder.image_embedder.modules():
            if m is not self.condition_embedder.image_embedder and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for block in self.blocks:
            block.attn2.add_k_proj.reset_parameters()
            block.attn2.norm_added_k.reset_parameters()
            block.attn2.add_v_proj.weight.zero_()
            block.attn2.add_v_proj.bias.zero_()
        self.null_context.zero_()

    def encode_conditions(self, driving_normals: Tensor, reference_latents: Tensor, reference_normal: Tensor
                          ) -> ConditionTokens:
        """Encode the conditions once; they do not depend on ``z_t`` or ``t`` (reused over sampling steps).

        Args:
            driving_normals: ``B x F x 3 x H x W`` N^D_{1:F} in ``[0, 1]``, ``F = 1 + 4k``.
            reference_latents: ``B x C x 1 x H/8 x W/8`` normalised VAE latent of I_R.
            reference_normal: ``B x 3 x H x W`` N^R in ``[0, 1]``.
        """
        dtype = self.patch_embedding.weight.dtype
        pose = self.pose_patch_embedding(self.pose_encoder(driving_normals.to(dtype)))
        if reference_latents.ndim != 5 or reference_latents.shape[2] != 1:
            raise ValueError(f"reference_latents must be B x C x 1 x h x w, got {tuple(reference_latents.shape)}")
        z = self.patch_embedding(reference_latents.to(dtype))
        features = self.reference_encoder(reference_normal.to(dtype))[:, :, None]
        if features.shape[-2:] != reference_latents.shape[-2:]:
            raise ValueError(
                f"reference_normal {tuple(reference_normal.shape)} is not 8x the reference latent grid "
                f"{tuple(reference_latents.shape[-2:])}; render N^R at the reference image's resolution"
            )
        tokens = (z + self.reference_patch_embedding(features)).flatten(2).transpose(1, 2)
        grid = z.shape[-2:]
        pos = get_2d_sincos_pos_embed(tokens.shape[-1], (grid[0], grid[1]), device=tokens.device, output_type="pt")
        return ConditionTokens(pose=pose, reference=tokens + pos.to(tokens.dtype))

    def forward(
        self,
        hidden_states: Tensor,
        timestep: Tensor,
        conditions: ConditionTokens,
        encoder_hidden_states: Tensor | None = None,
        condition_mask: Tensor | None = None,
        return_dict: bool = True,
    ) -> ExpPortraitTransformerOutput | tuple[Tensor]:
        """Predict the denoising target for ``z_t``.

        Args:
            hidden_states: ``B x C x f x h x w`` noisy latents ``z_t`` (normalised VAE latents).
            timestep: ``B`` (or scalar) diffusion timesteps in ``[0, num_train_timesteps)``.
            conditions: ``encode_conditions(driving_normals, reference_latents, reference_normal)``.
            encoder_hidden_states: optional ``B x 512 x text_dim`` context; default the null context.
            condition_mask: optional ``B`` of 1 (keep) / 0 (drop pose and reference, for CFG).
            return_dict: return an ``ExpPortraitTransformerOutput`` instead of a tuple.

        Returns:
            ``B x C x f x h x w`` prediction.
        """
        batch_size, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        timestep = timestep.expand(batch_size) if timestep.ndim == 0 else timestep
        if timestep.shape != (batch_size,):
            raise ValueError(f"timestep must be a scalar or B={batch_size} values, got {tuple(timestep.shape)}")

        # 1. Rotary position embedding of the video tokens
        rotary_emb = self.rope(hidden_states)

        # 2. Patch embedding of z_t plus the pose tokens
        tokens = self.patch_embedding(hidden_states)
        pose, ref = conditions.pose.to(tokens.dtype), conditions.reference.to(tokens.dtype)
        if pose.shape != tokens.shape:
            raise ValueError(
                f"pose tokens {tuple(pose.shape)} do not match the tokens {tuple(tokens.shape)} of z_t "
                f"{tuple(hidden_states.shape)}; use F = 4(f-1)+1 driving frames at 8x the latent size"
            )
        if condition_mask is not None:
            keep = condition_mask.to(tokens.dtype)
            pose = pose * keep.view(-1, 1, 1, 1, 1)
            ref = ref * keep.view(-1, 1, 1)
        tokens = (tokens + pose).flatten(2).transpose(1, 2).contiguous()

        # 3. Condition embeddings: time, (null) text, reference
        if encoder_hidden_states is None:
            encoder_hidden_states = self.null_context.expand(batch_size, -1, -1).to(tokens.dtype)
        if encoder_hidden_states.shape[1] != TEXT_CONTEXT_LENGTH:
            raise ValueError(
                f"encoder_hidden_states has {encoder_hidden_states.shape[1]} tokens; Wan's attention processor "
                f"needs exactly {TEXT_CONTEXT_LENGTH} (pad with zeros as the Wan pipeline does)"
            )
        temb, timestep_proj, context, ref = self.condition_embedder(timestep, encoder_hidden_states, ref)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        context = torch.concat([ref, context], dim=1)

        # 4. Transformer blocks
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            for block in self.blocks:
                tokens = self._gradient_checkpointing_func(block, tokens, context, timestep_proj, rotary_emb)
        else:
            for block in self.blocks:
                tokens = block(tokens, context, timestep_proj, rotary_emb)

        # 5. Output norm, projection & unpatchify (as WanTransformer3DModel)
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = self.proj_out(tokens)
        tokens = tokens.reshape(
            batch_size, num_frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1
        ).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = tokens.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return ExpPortraitTransformerOutput(sample=output)
