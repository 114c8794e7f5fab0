"""Does the tiny diffusion generator follow the driving normal maps N^D? An ablation on held-out subjects (#15).

Data are ``expgen_tiny.py``'s: ``configs/expgen/tiny.yaml``'s synthetic subjects (exact N^D / N^R,
``expgen.data.subjects``; 48 training + 6 held-out subjects, 4 clips of 9 frames each, 64 px). Training follows
tiny.yaml's two phases at one thread, split so that the trained rows share one VAE: stage 1 trains as tiny.yaml's
first ``vae_train_steps`` steps (VAE + DiT; the VAE's loss never reaches the DiT's, so the VAE does not depend
on it), or takes the VAE of ``--vae_from``; stage 2 trains each row's DiT from scratch on that frozen VAE for
the rest of tiny.yaml's steps (``--steps``), with tiny.yaml's learning-rate schedule over its own steps and tiny.yaml's
trainer callbacks (its EMA of the weights then starts at stage 2's first step, when tiny.yaml's VAE freezes).
``--quick``: 4 + 1 subjects, 32 px, 5 frames, 60 + 120 steps.

Rows (``method``), all on the held-out clips, with the same sampling seed per clip:

* ``model``: tiny.yaml as configured; ``shuffled_nd``: the same checkpoint with each subject's N^D permuted in
  time over its whole sequence (all its clips); ``nr_only``: the same checkpoint with N^D replaced by N^R repeated;
* ``no_reference``: the same architecture and steps, trained and sampled with the reference tokens zeroed
  (``use_reference: false``); ``epsilon``: the same with the paper's ε objective (``objective: epsilon``, DDIM);
* ``copy_reference``: I_R repeated; ``geometric``: ``expgen.generators.geometric`` warping I_R along the true
  meshes (regenerated from the subjects' seeds: the true mesh of the reference frame and of each clip frame);
* ``vae_reconstruction``: the model's VAE reconstructing the true frames, the ceiling of every DiT row.

Metrics; the face region of a frame is the pixels its true mesh covers (N^D != 0, the renderer's mask):

* ``face_psnr``: PSNR (dB, range 1) of the masked MSE pooled over a clip; ``face_ssim``: the SSIM map (11 px
  Gaussian window) averaged over the mask; ``psnr``: full-frame PSNR. All are means over the held-out clips.
* ``expression_error``: with ``X~_t = X_t - mean_t X`` (each frame's change from the clip's mean frame) and ``U``
  the pixels any true mesh of the clip covers, ``sum_t sum_U |G~_t - T~_t|^2 / sum_t sum_U |T~_t|^2`` for generated
  frames G and true frames T. 0: the clip's changes of expression, jaw and head pose are reproduced; 1: no change
  at all (copy_reference, or any static output, scores exactly 1); above 1: changes that do not match. Errors
  constant over the clip (identity, colour) cancel, so it scores following the motion, not the appearance; it
  uses the true frames and meshes only. Mean over clips.

``windows_*`` rows: ``DiffusionGenerator.sample`` (window ``--window``, every window from the same seeded noise) on a
60-frame held-out sequence (30 with ``--quick``): ``windows_independent`` without overlap, ``windows_blend{o}`` with
``o`` shared frames cross-faded (``--overlaps``), ``windows_context{o}`` with ``o`` frames carried as known context
(``--context_overlaps``). ``border_jump_ratio``: the mean absolute frame-to-frame change across window borders over
the mean change at the other frames, at the worst position of the transition (each of the ``o + 1`` changes from
the last frame before the shared ones to the first frame only the new window makes); ``true_border_ratio`` is the
same ratio of the true frames (the motion's own unevenness).

    python benchmarks/expgen_ablation.py [--quick] [--json PATH] [--png PATH] [--work_dir DIR]

``--png PATH`` writes the contact sheet of the first held-out clip, and ``PATH``'s ``_windows`` sibling the frames
4-21 of the ``windows_*`` videos.

``--work_dir`` keeps the clips (``data-<hash of the data settings>``) and the trained checkpoints
(``checkpoints/<method>-<hash of the settings>``), so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from diffusers import AutoencoderKLWan
from lightning.pytorch.cli import instantiate_class
from PIL import Image, ImageDraw
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen import DiffusionModule, VideoDataModule  # noqa: E402
from expgen.data.clips import read_clip  # noqa: E402
from expgen.data.subjects import SOURCE  # noqa: E402
from expgen.generators.base import GeneratorInputs  # noqa: E402
from expgen.generators.diffusion import DiffusionGenerator, window_starts  # noqa: E402
from expgen.generators.geometric import GeometricGenerator  # noqa: E402
from expgen.module import pixel_coverage, weighted_mse  # noqa: E402
from expgen.vae import decode_latents, encode_posterior, encode_video, kl_to_standard_normal  # noqa: E402
from exphead.head_model import HeadModel  # noqa: E402
from exphead.render import normal_to_image, render_normal_images  # noqa: E402
from exphead.synthetic.subject import make_subject, render_subject  # noqa: E402

log = logging.getLogger("expgen_ablation")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "expgen" / "tiny.yaml"
TRAINED = {"model": {}, "no_reference": {"use_reference": False}, "epsilon": {"objective": "epsilon"}}
SHEET_ROWS = ("N^D", "ground truth", "model", "shuffled_nd", "nr_only", "copy_reference", "geometric")


def face_mask(normals: Tensor) -> Tensor:
    """``F x 3 x H x W`` N^D -> ``F x 1 x H x W``: 1 where the true mesh covers the pixel."""
    return (normals.amax(1, keepdim=True) > 0).float()


def clip_scores(pred: Tensor, truth: Tensor, normals: Tensor) -> dict[str, float]:
    """Metrics of the module docstring for one clip (``F x 3 x H x W`` in ``[0, 1]``)."""
    pred, truth = pred.float().clamp(0, 1), truth.float()
    mask = face_mask(normals).expand_as(truth)
    face_mse = ((pred - truth) ** 2 * mask).sum() / mask.sum().clamp_min(1)
    _, ssim_map = structural_similarity_index_measure(pred, truth, data_range=1.0, return_full_image=True)
    union = mask.amax(0, keepdim=True)
    dg, dt = pred - pred.mean(0, keepdim=True), truth - truth.mean(0, keepdim=True)
    expression = ((dg - dt) ** 2 * union).sum() / ((dt ** 2) * union).sum().clamp_min(1e-12)
    return {"face_psnr": float(-10 * torch.log10(face_mse)),
            "face_ssim": float((ssim_map * mask).sum() / mask.sum().clamp_min(1)),
            "expression_error": float(expression),
            "psnr": float(-10 * torch.log10(((pred - truth) ** 2).mean()))}


def summarize(method: str, videos: list[Tensor], clips: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A row: ``method``, the clip-mean metrics of ``videos`` against ``clips``, and ``extra`` columns."""
    per_clip = [clip_scores(v, c["frames"], c["driving_normals"]) for v, c in zip(videos, clips)]
    row = {"method": method, **{k: sum(s[k] for s in per_clip) / len(per_clip) for k in per_clip[0]}}
    return {**row, "border_jump_ratio": None, "true_border_ratio": None, "train_s": None, **extra}


def held_out_clips(files: list[Path]) -> list[dict[str, Any]]:
    """The held-out clips as float tensors in ``[0, 1]``, with subject seed, clip start and reference frame."""
    clips = []
    for path in files:
        clip = read_clip(path)
        item = {k: getattr(clip, k).float() / 255 for k in
                ("frames", "driving_normals", "reference_image", "reference_normal")}
        clips.append({**item, "subject_id": clip.subject_id, "seed": clip.extra.get("subject_seed"),
                      "pose_scale": clip.extra.get("pose_scale", 1.0), "start": clip.extra.get("start"),
                      "reference_frame": clip.extra.get("reference_frame")})
    return clips


def shuffled_normals(clips: list[dict[str, Any]], seed: int = 0) -> list[Tensor]:
    """Each subject's N^D permuted in time over all its clips (fixed seed), cut back into clips."""
    out: list[Tensor] = [torch.empty(0)] * len(clips)
    g = torch.Generator().manual_seed(seed)
    for subject in sorted({c["subject_id"] for c in clips}):
        idx = [i for i, c in enumerate(clips) if c["subject_id"] == subject]
        normals = torch.cat([clips[i]["driving_normals"] for i in idx])
        normals = normals[torch.randperm(len(normals), generator=g)]
        for i, part in zip(idx, normals.split([len(clips[i]["driving_normals"]) for i in idx])):
            out[i] = part
    return out


@torch.no_grad()
def geometric_videos(clips: list[dict[str, Any]], total_frames: int, model: HeadModel) -> list[Tensor]:
    """The geometric generator on each clip, from the true meshes of its subject (regenerated from the seed)."""
    generator, heads, out = GeometricGenerator(), {}, []
    for c in clips:
        size = c["frames"].shape[-1]
        if c["seed"] not in heads:
            subject = make_subject(model, c["seed"], total_frames, pose_scale=c["pose_scale"], height=size, width=size)
            heads[c["seed"]] = (subject, model(subject.params, subject.delta_g, subject.delta_f))
        subject, head = heads[c["seed"]]
        sl, ref = slice(c["start"], c["start"] + len(c["frames"])), c["reference_frame"]
        inputs = GeneratorInputs(c["reference_image"], c["reference_normal"], head.vertices[ref], head.vertices[sl],
                                 head.landmarks[sl], model.faces, subject.camera, model.head_weight(),
                                 head.landmarks[ref])
        result = generator(inputs)
        drift = (result.driving_normals - c["driving_normals"]).abs().mean()
        if drift > 0.01:  # the regenerated meshes must be the clip's
            raise RuntimeError(f"regenerated meshes of {c['subject_id']} do not match its N^D (mean diff {drift:.3f})")
        out.append(result.frames)
    return out


@torch.no_grad()
def generate_videos(module: DiffusionModule, clips: list[dict[str, Any]], normals: list[Tensor], steps: int
                    ) -> list[Tensor]:
    """``module.generate`` per clip with the given N^D, seeded by the clip's index."""
    return [module.generate(c["reference_image"][None], c["reference_normal"][None], n[None], num_inference_steps=steps,
                            generator=torch.Generator().manual_seed(i), progress=False)[0]
            for i, (c, n) in enumerate(zip(clips, normals))]


def config_callbacks(specs: list[dict[str, Any]], skipped_steps: int) -> list[L.Callback]:
    """tiny.yaml's ``trainer.callbacks`` for a run that begins ``skipped_steps`` steps into tiny.yaml's schedule (stage
    2 begins at ``vae_train_steps``): an ``update_starting_at_step`` moves back by that much."""
    callbacks = []
    for spec in specs:
        args = dict(spec.get("init_args", {}))
        if args.get("update_starting_at_step") is not None:
            args["update_starting_at_step"] = max(0, args["update_starting_at_step"] - skipped_steps)
        callbacks.append(instantiate_class((), {"class_path": spec["class_path"], "init_args": args}))
    return callbacks


def train_or_load(name: str, model_args: dict[str, Any], data: VideoDataModule, steps: int, work: Path,
                  vae: Path | None = None, callbacks: list[dict[str, Any]] | None = None, skipped_steps: int = 0
                  ) -> tuple[Path, float]:
    """Train a module for ``steps`` steps (seed 0) with the callbacks ``callbacks`` (config specs, see
    :func:`config_callbacks`), starting from the VAE of the saved module ``vae`` if given, and save it to
    ``work/checkpoints/name-<settings hash>``; reuse a saved one. Returns the folder and the seconds."""
    settings = {"model": model_args, "steps": steps, "data": {k: v for k, v in data.hparams.items() if k != "data_dir"},
                "vae": None if vae is None else str(vae)}
    if callbacks:
        settings["callbacks"] = callbacks
        settings["skipped_steps"] = skipped_steps
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = work / "checkpoints" / f"{name}-{key}"
    record = folder / "train.json"
    if record.is_file():
        log.info("%s: reusing %s", name, folder)
        return folder, json.loads(record.read_text())["train_s"]
    L.seed_everything(0, verbose=False)
    module = DiffusionModule(**model_args)
    if vae is not None:
        module.vae.load_state_dict(AutoencoderKLWan.from_pretrained(vae / "vae").state_dict())
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=config_callbacks(callbacks or [], skipped_steps))
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    module.save_pretrained(folder)
    record.write_text(json.dumps({"settings": settings, "train_s": seconds}, indent=2))
    log.info("%s: trained %d steps in %.0f s", name, steps, seconds)
    return folder, seconds


def refine_vae(source: Path, data: VideoDataModule, steps: int, model_args: dict[str, Any], work: Path,
               lr: float = 5e-4) -> tuple[Path, float]:
    """Train the VAE of the saved module ``source`` alone for ``steps`` more steps (batches of 4 training clips,
    AdamW, the module's face-weighted reconstruction + KL loss, seed 0) and save the module to
    ``work/checkpoints/vae_refined-<hash>``; reuse a saved one. Returns the folder and the seconds."""
    settings = {"source": str(source), "steps": steps, "lr": lr}
    folder = work / "checkpoints" / f"vae_refined-{hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:10]}"
    record = folder / "train.json"
    if record.is_file():
        log.info("vae_refined: reusing %s", folder)
        return folder, json.loads(record.read_text())["train_s"]
    module = DiffusionModule.from_pretrained(source)
    vae = module.vae.train().requires_grad_(True)
    clips = [read_clip(path) for path in data.train_set.files]
    frames = torch.stack([c.frames.float() / 255 for c in clips])
    normals = torch.stack([c.driving_normals.float() / 255 for c in clips])
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.01)
    g, start = torch.Generator().manual_seed(0), time.perf_counter()
    for _ in range(steps):
        pick = torch.randint(0, len(frames), (4,), generator=g)
        posterior = encode_posterior(vae, frames[pick])
        reconstruction = vae.decode(posterior.sample(g)).sample
        target = frames[pick].permute(0, 2, 1, 3, 4) * 2 - 1
        weight = 1.0 + model_args["face_loss_weight"] * pixel_coverage(normals[pick])
        loss = weighted_mse(reconstruction.float(), target, weight) + model_args["vae_kl_weight"] * (
            kl_to_standard_normal(posterior))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    module.vae.eval()
    module.save_pretrained(folder)
    record.write_text(json.dumps({"settings": settings, "train_s": seconds}, indent=2))
    return folder, seconds


@torch.no_grad()
def window_rows(folder: Path, seed: int, num_frames: int, size: int, window: int, carried: list[tuple[str, int]],
                steps: int, model: HeadModel) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """``windows_*`` rows (module docstring) for each (carry, overlap) of ``carried`` on a ``num_frames`` sequence of
    the held-out subject ``seed`` (I_R: its last frame), and the videos (N^D and the truth first)."""
    subject = make_subject(model, seed, num_frames + 1, height=size, width=size)
    renders = render_subject(model, subject)
    normals, truth = normal_to_image(renders.normal[:num_frames]), renders.rgb[:num_frames]
    ref_normal = render_normal_images(subject.head(model, SOURCE).posed_neutral(num_frames), model.faces,
                                      subject.camera)[0]
    clip = {"frames": truth, "driving_normals": normals}
    rows, videos = [], {"N^D": normals, "ground truth": truth}
    for carry, overlap in carried:
        gen = DiffusionGenerator(folder, window=window, overlap=overlap, carry=carry)
        gen.module.hparams.num_inference_steps = steps
        video = gen.sample(renders.rgb[num_frames], ref_normal, normals)
        starts = window_starts(num_frames, window, overlap)[1:]
        name = f"windows_{carry}{overlap}" if overlap else "windows_independent"
        videos[name] = video
        rows.append(summarize(name, [video], [clip], border_jump_ratio=transition_ratio(video, starts, overlap),
                              true_border_ratio=transition_ratio(truth, starts, overlap)))
    return rows, videos


def transition_ratio(video: Tensor, starts: list[int], overlap: int) -> float:
    """The largest :func:`border_ratio` over the ``overlap + 1`` positions of the transitions at window ``starts``."""
    return max(border_ratio(video, [s + i for s in starts]) for i in range(overlap + 1))


def border_ratio(video: Tensor, borders: list[int]) -> float:
    """Mean absolute change ``|X_t - X_(t-1)|`` at the ``borders`` frames over the mean at the other frames."""
    change = (video[1:] - video[:-1]).abs().flatten(1).mean(1)  # change[t - 1]: frame t - 1 -> t
    at = torch.zeros(len(change), dtype=torch.bool)
    at[[b - 1 for b in borders]] = True
    return float(change[at].mean() / change[~at].mean())


def contact_sheet(path: Path, videos: dict[str, Tensor], scale: int = 2) -> None:
    """A PNG with one labelled row per video (frames side by side), ``scale`` x nearest up-sampling."""
    label_w = 110
    frames, _, h, w = next(iter(videos.values())).shape
    sheet = Image.new("RGB", (label_w + frames * w * scale, len(videos) * h * scale), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, video) in enumerate(videos.items()):
        row = (video.clamp(0, 1) * 255).round().byte().permute(2, 0, 3, 1).reshape(h, frames * w, 3)
        img = Image.fromarray(row.numpy()).resize((frames * w * scale, h * scale), Image.NEAREST)
        sheet.paste(img, (label_w, r * h * scale))
        draw.text((4, r * h * scale + h * scale // 2 - 6), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 + 1 subjects, 32 px, 5 frames, 120 steps")
    parser.add_argument("--json", type=Path, help="write the rows and metadata here")
    parser.add_argument("--png", type=Path, help="write the contact sheet of the first held-out clip here")
    parser.add_argument("--work_dir", type=Path, help="keep clips and checkpoints here (default: a temporary dir)")
    parser.add_argument("--steps", type=int, help="DiT-only steps of the trained rows (default: tiny.yaml's epochs "
                        "x batches - vae_train_steps; quick 120)")
    parser.add_argument("--vae_from", type=Path, help="a saved module whose VAE the trained rows share (default: "
                        "train it: tiny.yaml's first vae_train_steps steps; quick 60)")
    parser.add_argument("--vae_refine_steps", type=int, default=0, help="then train that VAE alone for this many "
                        "steps (refine_vae) before the DiT rows")
    parser.add_argument("--trained", nargs="*", default=list(TRAINED), choices=list(TRAINED),
                        help="trained rows to run")
    parser.add_argument("--model_args", type=json.loads, default={}, help="JSON overrides of tiny.yaml's model")
    parser.add_argument("--data_args", type=json.loads, default={}, help="JSON overrides of tiny.yaml's data")
    parser.add_argument("--window", type=int, help="diffusion window of the border rows (default: F)")
    parser.add_argument("--overlaps", type=int, nargs="*", default=[0, 3, 5],
                        help="blended overlaps of the border rows")
    parser.add_argument("--context_overlaps", type=int, nargs="*", default=[5],
                        help="overlaps carried as context in the border rows (1 + 4j)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small convs scale poorly)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    config = yaml.safe_load(CONFIG.read_text())
    model_args = {**config["model"]["init_args"], **args.model_args}
    data_args = config["data"]["init_args"]
    if args.quick:
        data_args = {**data_args, "synthetic_subjects": 4, "synthetic_size": 32, "resolution": 32,
                     "synthetic_frames": 5, "num_frames": 5}
    data_args = {**data_args, **args.data_args}
    steps = 10 if args.quick else model_args.get("num_inference_steps", 20)
    frames, size = data_args["num_frames"], data_args["resolution"]
    window = args.window or frames
    carried = [("blend", o) for o in args.overlaps if o < window]
    carried += [("context", o) for o in args.context_overlaps if o < window]
    train_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        key = hashlib.sha1(json.dumps({k: v for k, v in data_args.items() if k != "data_dir"}, sort_keys=True).encode())
        data = VideoDataModule(**{**data_args, "data_dir": str(work / f"data-{key.hexdigest()[:10]}")})
        data.prepare_data()
        data.setup("fit")
        epoch_steps = math.ceil(len(data.train_set) / data_args["batch_size"])
        vae_steps = 60 if args.quick else model_args["vae_train_steps"]
        train_steps = args.steps or (120 if args.quick else config["trainer"]["max_epochs"] * epoch_steps - vae_steps)
        vae = args.vae_from
        if vae is None:
            vae, train_s["vae"] = train_or_load("vae", {**model_args, "vae_train_steps": None}, data, vae_steps, work)
        if args.vae_refine_steps:
            vae, train_s["vae_refine"] = refine_vae(vae, data, args.vae_refine_steps, model_args, work)
        dit_args = {**model_args, "vae_loss_weight": 0.0, "vae_train_steps": None}
        clips = held_out_clips(data.val_set.files)
        head_model = HeadModel()
        total = data_args["synthetic_clips_per_subject"] * data_args["synthetic_frames"] + 1
        videos = {"copy_reference": [c["reference_image"][None].expand_as(c["frames"]) for c in clips],
                  "geometric": geometric_videos(clips, total, head_model)}
        folders: dict[str, Path] = {}
        for name in args.trained:
            folders[name], train_s[name] = train_or_load(name, {**dit_args, **TRAINED[name]}, data, train_steps, work,
                                                         vae, config["trainer"].get("callbacks"), vae_steps)
            module = DiffusionModule.from_pretrained(folders[name]).eval()
            own = [c["driving_normals"] for c in clips]
            videos[name] = generate_videos(module, clips, own, steps)
            if name == "model":
                videos["shuffled_nd"] = generate_videos(module, clips, shuffled_normals(clips), steps)
                videos["nr_only"] = generate_videos(
                    module, clips, [c["reference_normal"][None].expand_as(n) for c, n in zip(clips, own)], steps)
                with torch.no_grad():
                    videos["vae_reconstruction"] = [
                        decode_latents(module.vae, encode_video(module.vae, c["frames"][None]))[0] for c in clips]
        order = ["model", "shuffled_nd", "nr_only", "no_reference", "epsilon", "copy_reference", "geometric",
                 "vae_reconstruction"]
        rows = [summarize(m, videos[m], clips, train_s=train_s.get(m)) for m in order if m in videos]
        windows: dict[str, Tensor] = {}
        if "model" in folders and carried:
            window_scores, windows = window_rows(folders["model"], clips[0]["seed"], 30 if args.quick else 60, size,
                                window, carried, steps, head_model)
            rows += window_scores
    print_table(rows)
    if args.png and "model" in videos:
        first = clips[0]
        sheet = {"N^D": first["driving_normals"], "ground truth": first["frames"]}
        sheet.update({m: videos[m][0] for m in SHEET_ROWS[2:]})
        contact_sheet(args.png, sheet)
    if args.png and windows:  # frames 4-21: the first two window borders of a 9-frame window
        contact_sheet(args.png.with_name(args.png.stem + "_windows.png"), {k: v[4:22] for k, v in windows.items()})
    if args.json:
        meta = {**machine_meta(), "config": str(CONFIG.relative_to(CONFIG.parents[2])), "model": model_args,
                "callbacks": config["trainer"].get("callbacks"),
                "data": data_args, "train_clips": len(data.train_set), "val_clips": len(clips),
                "vae_steps": vae_steps, "vae_refine_steps": args.vae_refine_steps, "vae_from": str(vae),
                "vae_train_s": train_s.get("vae"), "vae_refine_s": train_s.get("vae_refine"),
                "dit_steps": train_steps, "sampling_steps": steps, "window": window, "carried": carried,
                "quick": args.quick}
        write_json(args.json, "expgen_ablation", rows, meta)


if __name__ == "__main__":
    main()
