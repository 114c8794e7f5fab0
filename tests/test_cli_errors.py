"""Bad input to every command: one line on stderr naming the problem, exit status 2, no traceback, and no output
file left behind."""

import numpy as np
import pytest
from skimage import data

from expgen.bench.cli import main as bench_main
from expgen.cli.animate import main as animate_main
from expgen.cli.clips import main as clips_main
from exphead.cli.demo import main as demo_main
from exphead.cli.fit import main as fit_main
from exphead.cli.synth import main as synth_main
from exphead.media import write_image, write_video


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    write_image(root / "face.png", data.astronaut()[::2, ::2])
    write_image(root / "blank.png", np.full((96, 96, 3), 200, np.uint8))
    (root / "notes.txt").write_text("not an image")
    (root / "cut.jpg").write_bytes((root / "face.png").read_bytes()[:500])
    (root / "empty").mkdir()
    (root / "corrupt.mp4").write_bytes(b"\x00\x01 not a video")
    write_video(root / "one.mp4", np.zeros((1, 64, 64, 3), np.uint8))
    write_video(root / "talk.mp4", np.repeat(data.astronaut()[None, ::4, ::4], 4, 0))
    (root / "blocker").write_text("a file where a folder should be")
    return root


SMALL = ["--size", "64", "--fit_size", "64", "--fit_steps", "1", "--tracker.steps", "3", "--max_frames", "3"]
ANIMATE = [  # (arguments with {root}, message)
    (["-d", "{root}/talk.mp4", "--size", "0"], "size must be >= 16"),
    (["-d", "{root}/talk.mp4", "--reference_frame", "-1"], "reference_frame must be >= 0"),
    (["-d", "{root}/talk.mp4", "--max_frames", "1"], "max_frames must be >= 2"),
    (["-d", "{root}/talk.mp4", "--stride", "0"], "stride must be >= 1"),
    (["-r", "{root}/notes.txt", "-d", "{root}/talk.mp4"], "not an image file"),
    (["-r", "{root}/missing.png", "-d", "{root}/talk.mp4"], "image not found"),
    (["-r", "{root}/cut.jpg", "-d", "{root}/talk.mp4"], "unreadable image"),
    (["-r", "{root}/blank.png", "-d", "{root}/talk.mp4", *SMALL], "reference {root}/blank.png: no face found"),
    (["-d", "{root}/empty"], "no images in the folder"),
    (["-d", "{root}/corrupt.mp4"], "unreadable video"),
    (["-d", "{root}/one.mp4"], "fewer than 2 frames"),
    (["-d", "{root}/missing.mp4"], "input not found"),
    (["-d", "{root}/talk.mp4", "--generator", "diffusion"], "needs weights"),
    (["-d", "{root}/talk.mp4", "--generator_weights", "{root}/nope"], "generator weights folder not found"),
    (["-d", "{root}/talk.mp4", "--transfer_weights", "{root}/nope"], "transfer module not found"),
    (["-d", "{root}/talk.mp4", "--device", "cuda"], "no CUDA device"),
    (["-d", "{root}/talk.mp4", "--mode", "self", "--reference_frame", "9", *SMALL], "not one of the 3 driving frames"),
    (["-d", "{root}/talk.mp4", "--smplx", "{root}/SMPLX_NEUTRAL.npz"], "SMPL-X model file not found"),
    (["-d", "{root}/talk.mp4", "--no_such_option", "1"], "no_such_option"),
    (["-d", "{root}/talk.mp4", "--mode", "sideways"], "sideways"),
]


@pytest.mark.parametrize("args, message", ANIMATE, ids=[m for _, m in ANIMATE])
def test_exp_animate_bad_inputs(inputs, tmp_path, capsys, args, message):
    out = tmp_path / "o.mp4"
    code = animate_main([a.format(root=inputs) for a in args] + ["-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message.format(root=inputs) in err and "Traceback" not in err, err
    assert err.count("exp-animate: error:") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a work folder


def test_exp_animate_bad_outputs(inputs, tmp_path, capsys):
    assert animate_main(["-d", str(inputs / "talk.mp4"), "-o", str(tmp_path / "o.avi")]) == 2
    assert "--out must end in .mp4" in capsys.readouterr().err
    assert animate_main(["-d", str(inputs / "talk.mp4"), "-o", str(inputs / "blocker" / "o.mp4")]) == 2
    assert "cannot write the output" in capsys.readouterr().err


OTHERS = [
    (fit_main, ["{root}/missing.mp4", "-o", "{out}"], "input not found"),
    (fit_main, ["{root}/face.png", "-o", "{out}", "--maps", "{root}/nomaps"], "maps folder not found"),
    (fit_main, ["{root}/face.png", "-o", "{out}", "--image_size", "8"], "image_size >= 16"),
    (fit_main, ["{root}/blank.png", "-o", "{out}", "--steps", "1", "--image_size", "64"], "no face found"),
    (fit_main, ["{root}/face.png", "-o", "{out}", "--normal_model", "{root}/n.onnx"], "DAViD normal model not found"),
    (clips_main, ["{root}/talk.mp4", "-o", "{out}", "--num_frames", "6"], "1 + 4k"),
    (clips_main, ["{root}/missing.mp4", "-o", "{out}", "--driving", "fitted", "--num_frames", "5"], "missing.mp4"),
    (bench_main, ["run", "--methods", "reference_copy", "--out", "{out}"], "give --manifest, or --dataset"),
    (bench_main, ["run", "--manifest", "{root}/none.json", "--out", "{out}"], "manifest not found"),
    (synth_main, ["{out}", "--frames", "0"], "--frames >= 1"),
    (demo_main, ["-o", "{out}", "--size", "4"], "--size must be >= 16"),
]


@pytest.mark.parametrize("main, args, message", OTHERS, ids=[m for _, _, m in OTHERS])
def test_other_commands_bad_inputs(inputs, tmp_path, capsys, main, args, message):
    out = tmp_path / "out"
    code = main([a.format(root=inputs, out=out) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists() or not any(p.suffix in (".json", ".safetensors", ".mp4") for p in out.rglob("*"))
