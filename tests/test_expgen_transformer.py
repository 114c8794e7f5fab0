"""ExpPortraitTransformer: zero-init equals bare Wan exactly, conditioning paths, save/load, Wan-folder loading."""

import json

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from expgen.backbone import TINY_VAE_CONFIG, WAN_PATH_ENV, build_backbone, load_transformer, resolve_wan_path
from expgen.transformer import TEXT_CONTEXT_LENGTH, ExpPortraitTransformer

BASE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=8,
            text_dim=12, freq_dim=16, ffn_dim=32, num_layers=2)
COND = dict(pose_encoder_channels=(4, 8, 8), pose_encoder_out_channels=8, reference_encoder_channels=(4, 8, 8),
            reference_encoder_out_channels=8)


def inputs(batch=2, frames=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    f, s = 1 + (frames - 1) // 4, size // 8
    return dict(hidden_states=torch.randn(batch, 8, f, s, s, generator=g),
                timestep=torch.tensor([700.0, 30.0])[:batch],
                driving_normals=torch.rand(batch, frames, 3, size, size, generator=g),
                reference_latents=torch.randn(batch, 8, 1, s, s, generator=g),
                reference_normal=torch.rand(batch, 3, size, size, generator=g))


def run(model, x, **kwargs):
    """Encode the conditions of ``x`` and run the denoiser on its ``z_t``."""
    conditions = model.encode_conditions(x["driving_normals"], x["reference_latents"], x["reference_normal"])
    return model(x["hidden_states"], x["timestep"], conditions, **kwargs).sample


def randomise_condition_layers(model):
    g = torch.Generator().manual_seed(1)
    names = set(model.condition_parameter_names())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in names:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_zero_init_output_equals_bare_wan_exactly():
    torch.manual_seed(0)
    model = ExpPortraitTransformer(**BASE, **COND).eval()
    bare = WanTransformer3DModel(**BASE).eval()
    result = bare.load_state_dict(model.state_dict(), strict=False)
    assert result.missing_keys == []
    assert set(result.unexpected_keys) == set(model.condition_parameter_names())
    x = inputs()
    context = torch.randn(2, TEXT_CONTEXT_LENGTH, BASE["text_dim"])
    with torch.no_grad():
        ours = run(model, x, encoder_hidden_states=context)
        ref = bare(x["hidden_states"], x["timestep"], context).sample
        null = run(model, x)
        bare_null = bare(x["hidden_states"], x["timestep"], torch.zeros_like(context)).sample
    assert ours.shape == x["hidden_states"].shape
    assert torch.equal(ours, ref)
    assert torch.equal(null, bare_null)  # the null context starts as Wan's all-padding prompt


def test_conditions_change_output_and_mask_drops_them():
    torch.manual_seed(0)
    model = ExpPortraitTransformer(**BASE, **COND).eval()
    randomise_condition_layers(model)
    x, other = inputs(seed=0), inputs(seed=5)
    swapped_pose = {**x, "driving_normals": other["driving_normals"]}
    swapped_ref = {**x, "reference_latents": other["reference_latents"], "reference_normal": other["reference_normal"]}
    drop = torch.zeros(2)
    with torch.no_grad():
        base = run(model, x)
        assert (run(model, swapped_pose) - base).abs().max() > 1e-3
        assert (run(model, swapped_ref) - base).abs().max() > 1e-3
        dropped = run(model, x, condition_mask=drop)
        assert torch.equal(dropped, run(model, swapped_pose, condition_mask=drop))
        assert torch.equal(dropped, run(model, swapped_ref, condition_mask=drop))
        mixed = run(model, x, condition_mask=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mixed[0], base[0])
    torch.testing.assert_close(mixed[1], dropped[1])


def test_gradients_reach_zero_init_layers_and_checkpointing_matches():
    torch.manual_seed(0)
    model = ExpPortraitTransformer(**BASE, **COND)
    x = inputs()
    run(model, x).square().mean().backward()
    assert model.pose_patch_embedding.weight.grad.abs().max() > 0
    assert model.blocks[0].attn2.add_v_proj.weight.grad.abs().max() > 0
    randomise_condition_layers(model)
    model.zero_grad()
    out = run(model, x)
    out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.enable_gradient_checkpointing()
    out_ckpt = run(model, x)
    out_ckpt.square().mean().backward()
    torch.testing.assert_close(out_ckpt, out)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-7)


def test_shape_errors_name_the_fix():
    model = ExpPortraitTransformer(**BASE, **COND)
    x = inputs()
    with pytest.raises(ValueError, match="pose tokens"):
        run(model, {**x, "driving_normals": torch.rand(2, 9, 3, 32, 32)})
    with pytest.raises(ValueError, match="exactly 512"):
        run(model, x, encoder_hidden_states=torch.zeros(2, 77, BASE["text_dim"]))
    with pytest.raises(ValueError, match="8x the reference latent grid"):
        run(model, {**x, "reference_normal": torch.rand(2, 3, 16, 16)})
    with pytest.raises(ValueError, match="temporal patch"):
        ExpPortraitTransformer(**{**BASE, "patch_size": (2, 2, 2)})


def test_save_pretrained_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = ExpPortraitTransformer(**BASE, **COND).eval()
    randomise_condition_layers(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "ExpPortraitTransformer"
    loaded = load_transformer(tmp_path).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(run(model, inputs()), run(loaded, inputs()))


def test_trained_folder_with_a_missing_shard_is_rejected(tmp_path):
    ExpPortraitTransformer(**BASE, **COND).save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    with pytest.raises(ValueError, match="lacks weights"):
        load_transformer(tmp_path)


def write_wan_folder(root, **overrides):
    torch.manual_seed(3)
    bare = WanTransformer3DModel(**{**BASE, **overrides})
    bare.save_pretrained(root / "transformer", max_shard_size="20KB")  # sharded like the real checkpoints
    AutoencoderKLWan(**TINY_VAE_CONFIG).save_pretrained(root / "vae")
    return bare


def test_load_from_wan_folder_keeps_backbone_and_zero_inits_condition(tmp_path):
    bare = write_wan_folder(tmp_path).eval()
    assert len(list((tmp_path / "transformer").glob("*.safetensors"))) > 1
    transformer, vae = build_backbone("wan", str(tmp_path), transformer_config=COND)
    assert isinstance(vae, AutoencoderKLWan)
    for name, value in bare.state_dict().items():
        assert torch.equal(transformer.state_dict()[name], value), name
    assert not transformer.blocks[1].attn2.add_v_proj.weight.any()
    assert transformer.pose_encoder.conv_in.weight.abs().sum() > 0  # default init, not left empty
    x = inputs()
    with torch.no_grad():
        ours = run(transformer.eval(), x)
        ref = bare(x["hidden_states"], x["timestep"], torch.zeros(2, TEXT_CONTEXT_LENGTH, BASE["text_dim"])).sample
    assert torch.equal(ours, ref)


def test_load_rejects_i2v_checkpoint_and_backbone_overrides(tmp_path):
    write_wan_folder(tmp_path, image_dim=16, added_kv_proj_dim=16)
    with pytest.raises(ValueError, match="not a Wan text-to-video checkpoint"):
        load_transformer(tmp_path / "transformer")
    with pytest.raises(ValueError, match="set by the checkpoint"):
        load_transformer(tmp_path / "transformer", num_layers=3)


def test_missing_weights_folder_errors_name_key_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv(WAN_PATH_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"model.init_args.wan_path.*{WAN_PATH_ENV}"):
        resolve_wan_path(None)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}.*does not exist.*{WAN_PATH_ENV}"):
        build_backbone("wan", str(tmp_path / "nope"))
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no vae/config.json"):
        resolve_wan_path(str(tmp_path))
    monkeypatch.setenv(WAN_PATH_ENV, str(tmp_path / "from-env"))
    with pytest.raises(FileNotFoundError, match=f"from {WAN_PATH_ENV}"):
        resolve_wan_path(None)


def test_cast_for_inference_keeps_fp32_modules_and_stays_close_to_fp32():
    from expgen.backbone import cast_for_inference

    torch.manual_seed(0)
    model = ExpPortraitTransformer(**BASE, **COND).eval()
    randomise_condition_layers(model)
    x = inputs()
    with torch.no_grad():
        ref = run(model, x)
        cast_for_inference(model, torch.bfloat16)
        low = run(model, {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v
                          for k, v in x.items()})
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert model.dtype == torch.bfloat16
    assert dtypes["scale_shift_table"] == torch.float32 and dtypes["blocks.0.scale_shift_table"] == torch.float32
    assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert sum(d == torch.bfloat16 for d in dtypes.values()) > len(dtypes) // 2
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05, rel
