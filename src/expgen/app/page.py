"""The page of ``exp-app`` (gradio): pick or upload a portrait and a driving video, choose the settings, watch the
stages go by, and get the video, the side-by-side preview and the contact sheet. A shell around
:class:`~expgen.app.runner.AppRunner`, which is a shell around :class:`~expgen.animator.Animator`.

Each browser session has its own folder under the app's temporary folder (uploads and results); it is removed
when the session ends (the tab is closed or reloaded), and the app's folder when the app stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from exphead.cli.common import TRACEBACK_ENV

from .runner import AppJob, AppRunner, example_files, page_error

logger = logging.getLogger(__name__)
SIZES = [128, 256, 384, 512]
REGIONS = ["all", "expression", "pose", "lips", "eyes"]
INTRO = """# ExpPortrait
Animate a portrait with a driving video: pick the examples (one click each) or upload your own, then **Animate**.
Runs on this machine; the reference fit is kept per portrait, so another driving video starts at once."""


def session_folder(root: Path, request: gr.Request) -> Path:
    """The folder of one browser session (its uploads and results)."""
    return root / f"session-{request.session_hash}"


def _keep_upload(path: str | None, folder: Path) -> str | None:
    """A copy of an upload in the session's folder (under its own name), or None."""
    if not path:
        return None
    target = folder / "uploads" / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(path).resolve() != target.resolve():
        shutil.copyfile(path, target)
    return str(target)


def build_page(runner: AppRunner, root: str | Path) -> gr.Blocks:
    """The page (not launched); ``root``: the app's temporary folder (examples, session folders)."""
    root = Path(root)
    portrait_example, driving_example = example_files(root / "examples", runner.model)
    cfg = runner.config
    sizes = sorted({*SIZES, cfg.size})
    with gr.Blocks(title="ExpPortrait", analytics_enabled=False, delete_cache=(900, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                reference = gr.Image(label="portrait", type="filepath", sources=["upload"], elem_id="reference",
                                     height=280)
                gr.Examples([[str(portrait_example)]], [reference], label="example portrait",
                            example_labels=["astronaut"], elem_id="reference-examples")
            with gr.Column():
                driving = gr.Video(label="driving video", sources=["upload"], format=None, include_audio=True,
                                   elem_id="driving", height=280)
                gr.Examples([[str(driving_example)]], [driving], label="example driving video",
                            example_labels=[driving_example.stem], elem_id="driving-examples")
            with gr.Column():
                mode = gr.Radio(["cross", "self"], value=cfg.mode, label="mode",
                                info=f"self: the portrait is frame {cfg.reference_frame} of the driving video")
                region = gr.Dropdown(REGIONS, value=cfg.animate, label="what moves")
                motion = gr.Radio(["relative", "absolute"], value=cfg.motion, label="motion")
                scale = gr.Slider(0.0, 2.0, value=cfg.expression_scale, step=0.05, label="expression scale")
                out_size = gr.Dropdown(sizes, value=cfg.size, label="output size (face crop, pixels)")
                frames = gr.Slider(0, runner.frame_limit, value=cfg.max_frames or 0, step=1, elem_id="frames",
                                   label="frames (0: all)")
                crop_only = gr.Checkbox(runner.output.crop_only, label="crop only (else the whole photo)")
                go = gr.Button("Animate", variant="primary", elem_id="animate")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
            video = gr.Video(label="result", interactive=False, elem_id="result", buttons=["download"], height=360)
            preview = gr.Video(label="preview: reference | driving | normal map | result", interactive=False,
                               elem_id="preview", buttons=["download"], height=360)
        sheet = gr.Image(label="contact sheet", type="filepath", interactive=False, elem_id="sheet")
        files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")

        def animate(reference: str | None, driving: str | None, mode: str, region: str, motion: str, scale: float,
                    out_size: int, frames: float, crop_only: bool, request: gr.Request,
                    progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 - gradio's way
            folder = session_folder(root, request)
            for old in folder.glob("job-*"):  # the page holds its own copies of earlier results
                shutil.rmtree(old, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="job-", dir=folder))
            inputs = [_keep_upload(reference, folder), _keep_upload(driving, folder)]
            job = AppJob(inputs[0], inputs[1], mode, region, motion, scale, int(out_size), int(frames), crop_only)
            try:
                done = runner.run(job, work, lambda fraction, text: progress(fraction, desc=text))
            except Exception as err:  # noqa: BLE001 - every failure is one line on the page; the app keeps serving
                bug = not isinstance(err, (ValueError, OSError)) or bool(os.environ.get(TRACEBACK_ENV))
                logger.warning("job failed: %s", err, exc_info=bug)
                return None, None, None, None, page_error(err, inputs)
            paths = [str(p) for p in (done.video, done.preview_video, done.sheet) if p is not None]
            return str(done.video), done.preview_video and str(done.preview_video), str(done.sheet), paths, \
                done.summary()

        def end_session(request: gr.Request) -> None:
            folder = session_folder(root, request)
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                logger.info("session ended: %s removed", folder)

        go.click(animate, [reference, driving, mode, region, motion, scale, out_size, frames, crop_only],
                 [video, preview, sheet, files, status], concurrency_limit=1, show_progress="full")
        page.unload(end_session)
    return page


__all__ = ["build_page", "session_folder"]
