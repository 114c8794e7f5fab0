"""The DiT and VAE backbones: Wan 2.1 weights from a local diffusers folder, or the embedded tiny default.

Real weights: a diffusers-format Wan 2.1 text-to-video folder (e.g. ``Wan2.1-T2V-1.3B-Diffusers``) with
subfolders ``transformer/`` and ``vae/``, given as the config key ``model.init_args.wan_path`` or the
environment variable ``EXPPORTRAIT_WAN_PATH``. Nothing is downloaded.

Embedded default: ``tiny`` builds the same classes (``ExpPortraitTransformer``, ``AutoencoderKLWan``)
with tiny widths and few layers, randomly initialised, trainable on a CPU in minutes.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.modeling_utils import ModelMixin, no_init_weights
from safetensors.torch import load_file

from expgen.transformer import CONDITION_CONFIG_KEYS, ExpPortraitTransformer

logger = logging.getLogger(__name__)

WAN_PATH_ENV = "EXPPORTRAIT_WAN_PATH"
WAN_PATH_KEY = "model.init_args.wan_path"

TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "in_channels": 8,
    "out_channels": 8,
    "text_dim": 16,
    "freq_dim": 32,
    "ffn_dim": 128,
    "num_layers": 2,
    "pose_encoder_channels": (8, 16, 32),
    "pose_encoder_out_channels": 32,
    "reference_encoder_channels": (8, 16, 32),
    "reference_encoder_out_channels": 32,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 8,
    "z_dim": 8,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "latents_mean": [0.0] * 8,
    "latents_std": [1.0] * 8,
}


def cast_for_inference(model: ModelMixin, dtype: torch.dtype) -> ModelMixin:
    """Cast ``model`` in place to ``dtype`` as ``from_pretrained(torch_dtype=dtype)`` loads it.

    Parameters and buffers whose dotted name contains an entry of the class's ``_keep_in_fp32_modules``
    (Wan: rope, time embedder, modulation tables, norms) stay float32, as diffusers' loader keeps them;
    ``model.dtype`` then reports ``dtype``.
    """
    torch.nn.Module.to(model, dtype)  # ModelMixin.to warns about the fp32 tensors restored below
    keep = set(model._keep_in_fp32_modules or [])
    if dtype != torch.float32:
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and keep & set(name.split(".")):
                tensor.data = tensor.data.float()
    return model


def resolve_wan_path(wan_path: str | os.PathLike | None) -> Path:
    """The Wan folder from ``wan_path`` or ``$EXPPORTRAIT_WAN_PATH``; checks ``transformer/`` and ``vae/``.

    Raises:
        FileNotFoundError: naming the folder, the config key and the environment variable to set.
    """
    hint = (
        f"set {WAN_PATH_KEY} (or the environment variable {WAN_PATH_ENV}) to a local diffusers-format Wan 2.1 "
        "text-to-video folder, e.g. Wan2.1-T2V-1.3B-Diffusers, with subfolders transformer/ and vae/"
    )
    source = "config" if wan_path else WAN_PATH_ENV
    wan_path = wan_path or os.environ.get(WAN_PATH_ENV)
    if not wan_path:
        raise FileNotFoundError(f"no Wan weights folder given: {hint}")
    folder = Path(wan_path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Wan weights folder {folder} (from {source}) does not exist: {hint}")
    for sub in ("transformer", "vae"):
        if not (folder / sub / "config.json").is_file():
            raise FileNotFoundError(f"Wan weights folder {folder} has no {sub}/config.json: {hint}")
    return folder


def load_transformer(folder: str | os.PathLike, **condition_config: Any) -> ExpPortraitTransformer:
    """Build ``ExpPortraitTransformer`` from a ``transformer/`` folder (config + safetensors shards).

    A Wan T2V checkpoint supplies every backbone weight (all must be present); the conditioning layers
    it lacks get their zero/default initialisation. A folder saved from an ``ExpPortraitTransformer``
    (``save_pretrained``) must supply every weight. (diffusers' ``from_pretrained`` is not used: for Wan
    models it requires ``accelerate``, and it would leave the absent conditioning layers on the meta device.)
    """
    folder = Path(folder)
    unknown = set(condition_config) - set(CONDITION_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are set by the checkpoint; only {CONDITION_CONFIG_KEYS} can be chosen")
    config = json.loads((folder / "config.json").read_text())
    trained = config.get("_class_name") == ExpPortraitTransformer.__name__
    if trained:
        clash = [k for k, v in condition_config.items() if json.loads(json.dumps(v)) != config.get(k)]
        if clash:
            raise ValueError(f"{folder} holds a trained ExpPortraitTransformer; its {clash} cannot be changed")
    for key in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
        if config.get(key) is not None:
            raise ValueError(
                f"{folder} has {key}={config[key]}: not a Wan text-to-video checkpoint; ExpPortrait adds its own "
                "reference branch to the T2V model (use e.g. Wan2.1-T2V-1.3B-Diffusers)"
            )
    accepted = inspect.signature(ExpPortraitTransformer.__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in accepted}
    with no_init_weights():  # every backbone weight is overwritten below; skip the random init
        model = ExpPortraitTransformer(**{**kwargs, **condition_config})
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}; expected a diffusers-format folder")
    loaded: set[str] = set()
    for shard in shards:
        state = load_file(shard)
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{shard} holds weights unknown to ExpPortraitTransformer: {unexpected[:5]}")
        loaded.update(state)
    missing = set(model.state_dict()) - loaded - (set() if trained else set(model.condition_parameter_names()))
    if missing:
        raise ValueError(f"{folder} lacks weights {sorted(missing)[:5]} (incomplete download or save?)")
    if not trained:
        model.reset_condition_parameters()
    logger.info("loaded %s transformer from %s (%d shards)", "ExpPortrait" if trained else "Wan", folder, len(shards))
    return model


def build_backbone(
    backbone: Literal["tiny", "wan"] = "tiny",
    wan_path: str | None = None,
    transformer_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
) -> tuple[ExpPortraitTransformer, AutoencoderKLWan]:
    """The denoiser and the VAE.

    Args:
        backbone: ``"tiny"`` (embedded random-initialised default) or ``"wan"`` (weights from ``wan_path``).
        wan_path: Wan diffusers folder; ``None`` falls back to ``$EXPPORTRAIT_WAN_PATH``.
        transformer_config: overrides of ``TINY_TRANSFORMER_CONFIG`` (tiny), or of the conditioning keys
            ``CONDITION_CONFIG_KEYS`` only (wan; the backbone sizes come from the checkpoint).
        vae_config: overrides of ``TINY_VAE_CONFIG`` (tiny only).
    """
    transformer_config = dict(transformer_config or {})
    if backbone == "tiny":
        transformer = ExpPortraitTransformer(**{**TINY_TRANSFORMER_CONFIG, **transformer_config})
        vae = AutoencoderKLWan(**{**TINY_VAE_CONFIG, **(vae_config or {})})
        if transformer.config.in_channels != vae.config.z_dim:
            raise ValueError(
                f"transformer in_channels {transformer.config.in_channels} != VAE z_dim {vae.config.z_dim}"
            )
        return transformer, vae
    if backbone != "wan":
        raise ValueError(f"backbone must be 'tiny' or 'wan', got {backbone!r}")
    if vae_config:
        raise ValueError("vae_config applies to the tiny backbone only; the Wan VAE comes from its folder")
    folder = resolve_wan_path(wan_path)
    transformer = load_transformer(folder / "transformer", **transformer_config)
    vae = AutoencoderKLWan.from_pretrained(folder / "vae")
    return transformer, vae
