"""One-shot CUDA check of the paths this CPU-only project cannot test in CI, with timings.

Sections (each independent; a failing one is recorded and the next runs):

* ``render`` — the built-in rasterizer on CUDA tensors vs. the same call on CPU (face-id agreement,
  depth / normal / vertex-gradient differences) and its forward and forward+backward time for the
  dense head at 512^2, batch 1 and 8; the nvdiffrast backend beside it where ``nvdiffrast`` imports.
* ``dit`` — Wan2.1-1.3B widths (30 blocks, random init) + the full-size Wan VAE at 512^2 x 81 frames:
  Lightning ``bf16-mixed`` training steps of ``DiffusionModule`` (VAE encode, DiT forward + backward with
  gradient checkpointing, AdamW), then bf16 inference: bare diffusers forward vs. our wrapper, and
  ``generate`` (UniPC) seconds per step and for the VAE round trip.
* ``wan14b`` — two blocks at Wan2.1-14B widths, fp32 weights under bf16 autocast, forward + backward with
  checkpointing at the same token count; ``x 20`` gives a 40-block estimate.
* ``fit`` — ``fit_subject`` (synthetic subject, 16 frames, 256^2) with the detail stage on the GPU,
  scored against ground truth as ``head_accuracy.py`` does.
* ``train_tiny`` — ``exp-train fit --config configs/expgen/tiny.yaml`` on the GPU in bf16-mixed.
* ``pipeline`` — the real carphone video and a synthetic one -> fitted heads (detail fit on the GPU) ->
  17-frame clips -> bf16-mixed training steps of the tiny DiffusionModule -> ``exp-animate``'s diffusion
  branch on the GPU in bfloat16 with the saved weights.

Results go to ``--json`` after every section (so a killed run keeps what it measured).

    python benchmarks/gpu_check.py --json OUT.json [--sections render,dit,...] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402
from expgen_speed import WAN13_WIDTHS  # noqa: E402
from head_accuracy import camera_space, scores  # noqa: E402
from render_speed import dense_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WAN13 = {**WAN13_WIDTHS, "num_layers": 30}
WAN14B = {**WAN13_WIDTHS, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 2}
WAN_VAE = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
           "temperal_downsample": [False, True, True], "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def peak_mb(device: torch.device, into: dict[str, Any], key: str = "peak_mem_mb"):
    """Record the CUDA high-water mark above the memory allocated on entry."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield
    torch.cuda.synchronize(device)
    into[key] = (torch.cuda.max_memory_allocated(device) - base) / 2**20


def section_render(device: torch.device, smoke: bool) -> list[dict[str, Any]]:
    from exphead.render import render_normal_depth

    size = 128 if smoke else 512
    verts, faces, camera, mesh = dense_head(size)
    weight = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def run(v: torch.Tensor, dev: torch.device, backend: str = "builtin") -> tuple[Any, torch.Tensor]:
        v = v.detach().to(dev).clone().requires_grad_(True)
        out = render_normal_depth(v, faces.to(dev), camera.to(dev), backend=backend)
        ((weight.to(dev) * out.normal).sum() + out.depth.sum()).backward()
        return out, v.grad

    ref, ref_grad = run(verts, torch.device("cpu"))
    rows = []
    backends = ["builtin"]
    try:
        import nvdiffrast.torch  # noqa: F401

        backends.append("nvdiffrast")
    except ImportError as err:
        rows.append({"backend": "nvdiffrast", "note": f"not importable: {err}"})
    for backend in backends:
        out, grad = run(verts, device, backend)
        both = (ref.mask * out.mask.cpu())[:, 0] > 0
        row: dict[str, Any] = {
            "backend": backend, "device": str(device), "size": size, "mesh": mesh,
            "face_id_agree": (ref.fragments.face_id == out.fragments.face_id.cpu()).float().mean().item(),
            "mask_iou": (both.sum() / ((ref.mask + out.mask.cpu())[:, 0] > 0).sum()).item(),
            "depth_max_abs_mm": (ref.depth - out.depth.cpu())[:, 0][both].abs().max().item() * 1e3,
            "normal_max_abs": (ref.normal - out.normal.cpu()).permute(0, 2, 3, 1)[both].abs().max().item(),
            "grad_rel_err": ((grad.cpu() - ref_grad).norm() / ref_grad.norm()).item(),
        }
        for batch in (1, 8):
            vb = (verts + 1e-3 * torch.randn(batch, *verts.shape[1:], generator=torch.Generator().manual_seed(1)))
            row.update(time_render(vb.to(device), faces.to(device), camera.to(device), backend, device,
                                   3 if smoke else 10, f"_b{batch}"))
        rows.append(row)
    return rows


def time_render(verts: torch.Tensor, faces: torch.Tensor, camera: Any, backend: str, device: torch.device,
                repeats: int, suffix: str) -> dict[str, float]:
    """Median forward and forward+backward ms of ``render_normal_depth``, and the backward's peak memory."""
    from exphead.render import render_normal_depth

    def fwd_bwd() -> None:
        v = verts.clone().requires_grad_(True)
        o = render_normal_depth(v, faces, camera, backend=backend)
        (o.normal.sum() + o.depth.sum()).backward()

    row: dict[str, float] = {}
    with torch.no_grad():
        row[f"fwd_ms{suffix}"] = median_ms(lambda: render_normal_depth(verts, faces, camera, backend=backend),
                                           device, repeats)
    row[f"fwd_bwd_ms{suffix}"] = median_ms(fwd_bwd, device, repeats)
    with peak_mb(device, row, f"peak_mem_mb{suffix}"):
        fwd_bwd()
    return row


class _RandomClips(torch.utils.data.Dataset):
    def __init__(self, frames: int, size: int, length: int) -> None:
        self.frames, self.size, self.length = frames, size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        f, s = self.frames, self.size
        video = {k: torch.rand(f, 3, s, s, generator=g) for k in ("frames", "driving_normals")}
        return {**video, **{k: torch.rand(3, s, s, generator=g) for k in ("reference_image", "reference_normal")}}


class _StepTimer:
    """Lightning callback: wall seconds of each training batch (synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._start = device, [], 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)


def section_dit(device: torch.device, smoke: bool) -> list[dict[str, Any]]:
    import lightning as L
    from diffusers import WanTransformer3DModel

    from expgen import DiffusionModule
    from expgen.backbone import cast_for_inference
    from expgen.sampling import generate
    from expgen.transformer import CONDITION_CONFIG_KEYS, TEXT_CONTEXT_LENGTH

    size, frames = (64, 9) if smoke else (512, 81)
    widths = {**WAN13, "num_layers": 2} if smoke else WAN13
    vae_cfg = {**WAN_VAE, "base_dim": 16} if smoke else WAN_VAE
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    with torch.device(device):
        module = DiffusionModule(backbone="tiny", transformer_config=widths, vae_config=vae_cfg,
                                 gradient_checkpointing=True, condition_drop_prob=0.1)
    params = sum(p.numel() for p in module.transformer.parameters())
    row: dict[str, Any] = {"case": "train_wan1.3b_widths", "size": size, "frames": frames, "precision": precision,
                           "dit_params_m": params / 1e6,
                           "tokens": (1 + (frames - 1) // 4) * (size // 16) ** 2}
    timer = _StepTimer(device)
    callback = type("StepTimer", (L.Callback,), {"on_train_batch_start": lambda s, *a: timer.on_train_batch_start(),
                                                  "on_train_batch_end": lambda s, *a: timer.on_train_batch_end()})()
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback], num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(_RandomClips(frames, size, 3), batch_size=1)
    with peak_mb(device, row):
        trainer.fit(module, loader)
    row["step_s"] = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
    row["first_step_s"] = timer.times[0]
    row["loss_finite"] = bool(torch.isfinite(trainer.callback_metrics["train_loss"]).item())
    del trainer
    rows = [row]

    # bf16 inference: bare diffusers forward vs. the wrapper, on the same weights and tokens
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    transformer = cast_for_inference(module.transformer.to(device), dtype).eval()  # Lightning's teardown
    vae = cast_for_inference(module.vae.to(device), dtype).eval()  # left both on the CPU
    module.transformer = module.vae = None
    del module
    if device.type == "cuda":
        torch.cuda.empty_cache()
    base = {k: v for k, v in transformer.config.items() if k not in CONDITION_CONFIG_KEYS and not k.startswith("_")}
    with torch.device(device):
        bare = WanTransformer3DModel(**base).eval()
    bare.load_state_dict(transformer.state_dict(), strict=False)
    cast_for_inference(bare, dtype)
    g = torch.Generator(device).manual_seed(0)
    f, s, c = 1 + (frames - 1) // 4, size // 8, transformer.config.in_channels
    z = torch.randn(1, c, f, s, s, generator=g, device=device, dtype=dtype)
    t = torch.tensor([500.0], device=device)
    context = torch.zeros(1, TEXT_CONTEXT_LENGTH, transformer.config.text_dim, device=device, dtype=dtype)
    driving = torch.rand(1, frames, 3, size, size, generator=g, device=device, dtype=dtype)
    ref_latent = torch.randn(1, c, 1, s, s, generator=g, device=device, dtype=dtype)
    ref_image = torch.rand(1, 3, size, size, generator=g, device=device, dtype=dtype)
    ref_normal = torch.rand(1, 3, size, size, generator=g, device=device, dtype=dtype)
    fwd: dict[str, Any] = {"case": "forward_bf16" if dtype == torch.bfloat16 else "forward_fp32", "size": size,
                           "frames": frames}
    with torch.no_grad():
        conditions = transformer.encode_conditions(driving, ref_latent, ref_normal)
        fwd["bare_ms"] = median_ms(lambda: bare(z, t, context), device, 3)
        fwd["wrapped_ms"] = median_ms(
            lambda: transformer(z, t, transformer.encode_conditions(driving, ref_latent, ref_normal), context),
            device, 3)
        fwd["wrapped_step_ms"] = median_ms(lambda: transformer(z, t, conditions, context), device, 3)
        fwd["overhead_ratio"] = fwd["wrapped_ms"] / fwd["bare_ms"]
        fwd["step_overhead_ratio"] = fwd["wrapped_step_ms"] / fwd["bare_ms"]
    rows.append(fwd)
    from expgen.objectives import FlowMatchingObjective

    sample: dict[str, Any] = {"case": "generate_unipc", "size": size, "frames": frames}
    seconds = {}
    for steps in (1, 4):
        scheduler = FlowMatchingObjective().make_scheduler("unipc")
        sync(device)
        start = time.perf_counter()
        with peak_mb(device, sample):
            video = generate(transformer, vae, scheduler, ref_image, ref_normal, driving, num_inference_steps=steps,
                             generator=torch.Generator(device).manual_seed(0), progress=False)
        sync(device)
        seconds[steps] = time.perf_counter() - start
    sample["s_per_step"] = (seconds[4] - seconds[1]) / 3
    sample["vae_and_setup_s"] = seconds[1] - sample["s_per_step"]
    sample["s_per_frame_30_steps"] = (sample["vae_and_setup_s"] + 30 * sample["s_per_step"]) / frames
    sample["output_finite"] = bool(torch.isfinite(video).all().item())
    rows.append(sample)
    return rows


def section_wan14b(device: torch.device, smoke: bool) -> list[dict[str, Any]]:
    from expgen.transformer import ExpPortraitTransformer

    size, frames = (64, 9) if smoke else (512, 81)
    widths = {**WAN14B, "num_attention_heads": 4} if smoke else WAN14B
    dtype = torch.float32  # fp32 master weights under bf16 autocast, as Lightning's bf16-mixed trains
    with torch.device(device):
        model = ExpPortraitTransformer(**widths)
    model.enable_gradient_checkpointing()
    g = torch.Generator(device).manual_seed(0)
    f, s, c = 1 + (frames - 1) // 4, size // 8, model.config.in_channels
    z = torch.randn(1, c, f, s, s, generator=g, device=device, dtype=dtype)
    t = torch.tensor([500.0], device=device)
    driving = torch.rand(1, frames, 3, size, size, generator=g, device=device, dtype=dtype)
    ref_latent = torch.randn(1, c, 1, s, s, generator=g, device=device, dtype=dtype)
    ref_normal = torch.rand(1, 3, size, size, generator=g, device=device, dtype=dtype)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            cond = model.encode_conditions(driving, ref_latent, ref_normal)
            loss = model(z, t, cond).sample.float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    row: dict[str, Any] = {"case": "wan14b_widths_2_blocks_fwd_bwd", "size": size, "frames": frames,
                           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    row["fwd_bwd_ms"] = median_ms(step, device, 3, warmup=1)
    with peak_mb(device, row):
        step()
    row["est_40_blocks_s"] = row["fwd_bwd_ms"] * 20 / 1e3
    return [row]


def section_fit(device: torch.device, smoke: bool) -> list[dict[str, Any]]:
    from exphead.fitting import FitConfig, fit_subject, synthetic_targets
    from exphead.head_model import HeadModel
    from exphead.synthetic.subject import make_subject
    from exphead.tracking.tracker import TrackerConfig

    frames, size, steps = (2, 64, 3) if smoke else (16, 256, 200)
    model = HeadModel()
    targets = synthetic_targets(model, 100, frames, size)
    truth = make_subject(model, 100, frames, height=size, width=size)
    gt_cam = truth.camera.scaled(size, size)
    with torch.no_grad():
        truth_c = camera_space(gt_cam, model(truth.params, truth.delta_g, truth.delta_f).vertices)
    cfg = FitConfig(steps=steps, frames_per_step=4, tracker=TrackerConfig(), show_progress=False,
                    accelerator="gpu" if device.type == "cuda" else "cpu")
    start = time.perf_counter()
    head = fit_subject(targets, None, cfg, model=model)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        fit_c = camera_space(head.camera, head.frame(slice(None)).vertices)
        row = {"case": "fit_subject_personalized", "frames": frames, "size": size, "steps": steps,
               "accelerator": cfg.accelerator, "seconds": seconds, **scores(model, fit_c, truth_c, gt_cam.K, size)}
    return [row]


def section_train_tiny(device: torch.device, smoke: bool, out: Path) -> list[dict[str, Any]]:
    accel, precision = ("gpu", "bf16-mixed") if device.type == "cuda" else ("cpu", "32-true")
    cmd = [sys.executable, "-c", "from expgen.cli.train import main; main()", "fit",
           "--config", str(ROOT / "configs/expgen/tiny.yaml"), f"--trainer.accelerator={accel}",
           f"--trainer.precision={precision}", f"--trainer.max_epochs={1 if smoke else 5}",
           f"--trainer.default_root_dir={out / 'tiny-run'}", f"--data.init_args.data_dir={out / 'tiny-clips'}",
           "--trainer.enable_progress_bar=false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240)
    tail = (proc.stdout + proc.stderr)[-1500:]
    if proc.returncode:
        raise RuntimeError(f"exp-train failed ({proc.returncode}):\n{tail}")
    val = [line for line in tail.splitlines() if "val_loss" in line]
    return [{"case": "exp-train tiny.yaml", "precision": precision, "seconds": time.perf_counter() - start,
             "last_val_line": val[-1].strip() if val else ""}]


def section_pipeline(device: torch.device, smoke: bool, out: Path, sources: list[str] | None = None
                     ) -> list[dict[str, Any]]:
    """Real video -> fitted heads -> clips -> a few bf16 training steps -> exp-animate's diffusion branch."""
    import lightning as L

    from expgen import DiffusionModule, VideoDataModule
    from expgen.animator import AnimateConfig, animate
    from expgen.data import ClipBuildConfig, build_clips
    from expgen.examples import default_driving_video, real_driving_video
    from exphead.fitting import FitConfig
    from exphead.head_model import HeadModel
    from exphead.tracking.tracker import TrackerConfig

    gpu = device.type == "cuda"
    frames, size, steps = (5, 64, 2) if smoke else (17, 256, 30)
    model = HeadModel()
    sources = sources or [str(real_driving_video()), str(default_driving_video(model=model))]
    fit = FitConfig(image_size=128, steps=5 if smoke else 50, show_progress=False,
                    tracker=TrackerConfig(steps=40, rigid_fraction=0.5) if smoke else TrackerConfig(),
                    accelerator="gpu" if gpu else "cpu")
    clock = time.perf_counter()
    report = build_clips(sources, out / "clips", None, ClipBuildConfig(num_frames=frames, size=size, driving="fitted",
                                                                       max_frames=30 if smoke else None, fit=fit),
                         heads_dir=out / "heads", model=model)
    row: dict[str, Any] = {"case": "real+synthetic video -> clips -> train -> animate", "clips": len(report.clips),
                           "build_clips_s": time.perf_counter() - clock}
    data = VideoDataModule(str(out / "clips"), batch_size=2, num_frames=frames, resolution=size, val_fraction=0.5)
    module = DiffusionModule(backbone="tiny", vae_loss_weight=1.0, lr=1e-3)
    trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision="bf16-mixed" if gpu else "32-true",
                        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=2)
    clock = time.perf_counter()
    trainer.fit(module, datamodule=data)
    row["train_s"] = time.perf_counter() - clock
    row["train_loss"] = trainer.callback_metrics["train_loss"].item()
    module.save_pretrained(out / "tiny-weights")
    cfg = AnimateConfig(size=size, fit_size=128, max_frames=frames, generator="diffusion",
                        generator_weights=str(out / "tiny-weights"), device=str(device),
                        dtype="bfloat16" if gpu else "float32", show_progress=False, fit_steps=10,
                        tracker=TrackerConfig(steps=40, rigid_fraction=0.5))
    clock = time.perf_counter()
    result = animate(None, sources[0], AnimateConfig(**{**cfg.__dict__, "mode": "self"}), model=model)
    row["animate_s"] = time.perf_counter() - clock
    row["generate_s"] = result.timings["generate"]
    row["animate_frames"] = tuple(result.frames.shape)
    row["animate_finite"] = bool(torch.isfinite(result.frames).all())
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--sections", default="render,dit,wan14b,fit,train_tiny")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, runs on CPU: checks the script itself")
    ap.add_argument("--sources", nargs="+", help="pipeline: videos / frame folders (default: carphone + synthetic)")
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip sections that start after this many seconds")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for name in args.sections.split(","):
        if time.perf_counter() - start > args.budget_s:
            results[name] = {"skipped": "time budget"}
            continue
        t0 = time.perf_counter()
        print(f"== {name} ({t0 - start:.0f} s)", flush=True)
        try:
            if name == "pipeline":
                rows = section_pipeline(device, args.smoke, args.json.parent, args.sources)
            elif name == "train_tiny":
                rows = section_train_tiny(device, args.smoke, args.json.parent)
            else:
                rows = globals()[f"section_{name}"](device, args.smoke)
            results[name] = {"rows": rows, "seconds": time.perf_counter() - t0}
            for r in rows:
                print_table([r])
        except Exception as err:  # record and go on: one broken path must not hide the others
            results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
            print(results[name]["traceback"], flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES",)}
        write_json(args.json, "gpu_check", [results], {**machine_meta(), "smoke": args.smoke, "env": env})
        sys.stdout.flush()


if __name__ == "__main__":
    main()
