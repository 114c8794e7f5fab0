"""exp-app: the main job as a local web page (gradio), on http://127.0.0.1:7860 unless told otherwise.

Pick or upload a portrait and a driving video, choose the settings, and get the video, the side-by-side preview
and the contact sheet. The options not on the page are exp-animate's (the page's settings start at them):

  exp-app
  exp-app --port 8000 --size 256 --max_frames 48
  exp-app --host 0.0.0.0 --generator_weights weights/ --device cuda   # reachable from other machines
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from exphead.cli.common import CommandError, make_parser, run_command

from ..outputs import OutputConfig
from .animate import add_animate_options, animate_config

log = logging.getLogger("exp-app")


def build_parser() -> ArgumentParser:
    p = make_parser("exp-app", __doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--frame_limit", type=int, default=600, help="most driving frames one job may use")
    p.add_argument("--max_upload_mb", type=int, default=200, help="largest upload, in megabytes")
    add_animate_options(p)
    p.add_class_arguments(OutputConfig, "output")
    return p


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = animate_config(parser, args)
    if args.frame_limit < 2:
        raise CommandError(f"--frame_limit must be >= 2, got {args.frame_limit}")
    root = tempfile.mkdtemp(prefix="exp-app-")
    os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(root, "gradio"))  # uploads and served copies
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _stop)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests
    try:
        try:
            from ..app.page import build_page
        except ImportError as err:
            raise ImportError(f"{err}: exp-app needs gradio (pip install -e \".[app]\")") from err
        from ..app.runner import AppRunner

        runner = AppRunner(cfg, parser.instantiate(args).output, frame_limit=args.frame_limit)
        page = build_page(runner, root)
        log.info("temporary files: %s (removed when the app stops)", root)
        page.queue(default_concurrency_limit=1).launch(
            server_name=args.host, server_port=args.port, max_file_size=f"{args.max_upload_mb}mb", quiet=False,
            show_error=False, ssr_mode=False, footer_links=[])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-app", _main, argv)


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
