"""The animator as its users and exp-bench hold it: weights load once, one configuration for every shell,
and what a command prints is ours (one bar per stage, no third-party warnings)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage import data

from expgen.animator import AnimateConfig, Animator
from expgen.bench.cli import build_parser as bench_parser
from expgen.bench.cli import ours_config
from expgen.bench.methods import Ours
from expgen.cli.animate import animate_config
from expgen.cli.animate import build_parser as animate_parser
from exphead.tracking import TrackerConfig

OPTIONS = ["--size", "96", "--fit_size", "96", "--fit_steps", "3", "--tracker.steps", "12", "--tracker.lr", "0.02",
           "--generator", "geometric", "--seed", "5"]


def test_exp_bench_ours_runs_exp_animates_configuration():
    """The same options give the same AnimateConfig in exp-animate and in exp-bench's ``--ours.*``; the bench
    changes only what its manifest decides (size, stride, frame count) and hides progress bars."""
    parser = animate_parser()
    animate_cfg = animate_config(parser, parser.parse_args(["-o", "x.mp4", *OPTIONS]))
    bench = bench_parser()
    run = bench.instantiate(bench.parse_args(["run", "--manifest", "m.json", "--out", "o",
                                              *[a.replace("--", "--ours.", 1) if a.startswith("--") else a
                                                for a in OPTIONS]])).run
    assert run.ours == animate_cfg
    assert ours_config(run.ours, manifest_size=128) == replace(animate_cfg, size=128, stride=1, max_frames=None,
                                                               show_progress=False)
    default = animate_config(parser, parser.parse_args(["-o", "x.mp4"]))
    assert default.tracker.steps == 100 and default.tracker.rigid_steps == 33  # one derivation of the rigid stage
    assert bench.instantiate(bench.parse_args(["run", "--manifest", "m", "--out", "o"])).run.ours == default


@pytest.fixture(scope="module")
def weights(tmp_path_factory, head_model):
    """A tiny saved DiffusionModule and a saved transfer module (random weights)."""
    from expgen.module import DiffusionModule
    from exptransfer import ExpressionTransfer

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    DiffusionModule(backbone="tiny", num_inference_steps=2).save_pretrained(root / "generator")
    ExpressionTransfer(head_model.num_expression, code_dim=8, encoder_hidden=16, hidden_dim=16, num_layers=1,
                       num_frequencies=2).save_pretrained(root / "transfer")
    return root


def test_second_animate_call_loads_no_weights(weights, head_model, monkeypatch):
    """Models and weights load in the constructor; animate() afterwards loads nothing (exp-bench animates every
    item with one animator)."""
    import expgen.animator
    import expgen.module
    import exphead.tracking.faces

    cfg = AnimateConfig(size=64, fit_size=96, fit_steps=2, max_frames=5, tracker=TrackerConfig(steps=10),
                        generator_weights=str(weights / "generator"), transfer_weights=str(weights / "transfer"),
                        diffusion_window=5, show_progress=False)
    animator = Animator(cfg, model=head_model)
    assert animator.generator.name == "diffusion" and animator.transfer is not None

    def forbidden(*args, **kwargs):
        raise AssertionError("weights loaded after the animator was built")

    monkeypatch.setattr(expgen.module.DiffusionModule, "from_pretrained", classmethod(forbidden))
    monkeypatch.setattr(expgen.animator, "load_transfer", forbidden)
    monkeypatch.setattr(exphead.tracking.faces.DlibFaceDetector, "__init__", forbidden)
    monkeypatch.setattr(expgen.animator.HeadModel, "__init__", forbidden)
    frames = np.stack([data.astronaut()[::2, ::2]] * 5)  # a still "video" of the astronaut at 256 px
    first = animator.animate(None, frames, mode="self")
    second = animator.animate(data.astronaut(), frames)
    assert first.frames.shape == second.frames.shape == (5, 3, 64, 64)
    assert second.components["transfer"]["fingerprint"] == animator.components()["transfer"]["fingerprint"]
    assert second.reference_box.side > 100 and first.driving_box == first.reference_box  # self: one crop


def test_bench_ours_uses_the_animators_crop_boxes(head_model):
    """Ours maps frames back with the boxes the animator returns (no second face detection)."""
    cfg = AnimateConfig(size=96, fit_size=96, fit_steps=2, tracker=TrackerConfig(steps=10), show_progress=False)
    ours = Ours(Animator(cfg, model=head_model))
    assert ours.settings()["config"]["tracker"]["steps"] == 10
    with pytest.raises(ValueError, match="stride"):
        Ours(Animator(replace(cfg, stride=2), model=head_model))


def test_fit_on_one_photo_prints_one_bar_and_no_third_party_warnings(tmp_path, capfd):
    from exphead.cli.fit import main
    from exphead.media import write_image

    write_image(tmp_path / "me.png", data.astronaut())
    assert main([str(tmp_path / "me.png"), "--out", str(tmp_path / "fit"), "--steps", "6", "--frames_per_step",
                 "1", "--image_size", "96", "--tracker.steps", "9"]) == 0
    captured = capfd.readouterr()
    shown = captured.out + captured.err
    assert "Epoch 1" not in shown and "6/6" in shown  # one bar over the six detail steps
    for noise in ("Sparse CSR", "LeafSpec", "GPU available", "litlogger", "Warning"):
        assert noise not in shown, shown
