"""``exp-app``: a local web page for the main job. :mod:`~expgen.app.runner` runs the jobs (no gradio needed);
:mod:`~expgen.app.page` is the gradio page around it; ``expgen.cli.app`` starts it."""

from .runner import AppJob, AppResult, AppRunner, FitCache, StageClock, fit_key, page_error

__all__ = ["AppJob", "AppResult", "AppRunner", "FitCache", "StageClock", "fit_key", "page_error"]
