"""Every config in configs/ goes through the exp-train entry point (the LightningCLI of expgen.cli.train)."""

from pathlib import Path

import pytest

from expgen.cli.train import cli

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
NEEDS_WEIGHTS = {"wan2.1-1.3b.yaml", "wan2.1-14b.yaml"}  # fail with a clear error until the Wan folder is given


def test_every_package_has_configs():
    assert {p.parent.name for p in CONFIGS} == {"exphead", "exptransfer", "expgen"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_instantiates_through_exp_train(path, tmp_path, monkeypatch):
    monkeypatch.delenv("EXPPORTRAIT_WAN_PATH", raising=False)
    args = ["--config", str(path), f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu"]
    if path.name in NEEDS_WEIGHTS:
        with pytest.raises((FileNotFoundError, ValueError), match="EXPPORTRAIT_WAN_PATH"):
            cli(args, run=False)
        return
    if "14b" in path.name or "paper" in path.name:
        args.append("--trainer.precision=32-true")
    c = cli(args, run=False)
    assert c.model is not None and c.datamodule is not None and c.trainer is not None


def test_exphead_fit_config_runs_a_few_steps(tmp_path):
    path = Path(__file__).resolve().parents[1] / "configs" / "exphead" / "fit_synthetic.yaml"
    c = cli(["fit", "--config", str(path), "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}",
             "--trainer.enable_progress_bar=false", "--model.init_args.num_frames=2", "--model.init_args.level=1",
             "--model.init_args.image_size=[64, 64]", "--data.init_args.num_frames=2",
             "--data.init_args.image_size=64", "--data.init_args.frames_per_step=2",
             f"--data.init_args.cache_dir={tmp_path}"])
    assert c.trainer.global_step == 2
    assert (tmp_path / "tracking.safetensors").is_file()
