"""Normal and depth targets from DAViD-layout ONNX models (tiny torch nets exported here, known outputs)."""

import logging
import sys

import numpy as np
import pytest
import torch
from torch import nn

from exphead.fitting import FitConfig, FitTargets, OnnxMapEstimator, fit_subject, synthetic_targets
from exphead.fitting.fit import add_maps, load_targets
from exphead.fitting.targets import pad_to_square, resolve_map_model
from exphead.head_model import HeadModel
from exphead.media import write_image
from exphead.tracking.tracker import TrackerConfig

pytest.importorskip("onnxruntime")

SIZE, FRAMES = 96, 4


def _export(module: nn.Module, path, size: int, outputs: tuple[str, ...] = ("out",)):
    """Export ``module`` taking one ``1 x 3 x size x size`` image, as the DAViD graphs do."""
    torch.onnx.export(module.eval(), torch.zeros(1, 3, size, size), str(path), input_names=["image"],
                      output_names=list(outputs), dynamo=False)
    return path


class _Const(nn.Module):
    """Returns fixed fields (``x * 0`` keeps the image input in the graph)."""

    def __init__(self, *fields: torch.Tensor) -> None:
        super().__init__()
        for i, f in enumerate(fields):
            self.register_buffer(f"f{i}", f)
        self.n = len(fields)

    def forward(self, x):
        zero = x.sum() * 0
        outs = tuple(getattr(self, f"f{i}") + zero for i in range(self.n))
        return outs if self.n > 1 else outs[0]


class _Pointwise(nn.Module):
    """``out = scale * (2 x - 1)``, channel for channel: the normal the colour encodes."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * (2 * x - 1)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r, c = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    return r, c


@pytest.mark.parametrize("height,width", [(40, 64), (64, 40)])
def test_depth_maps_back_through_padding_and_resizing(tmp_path, height, width):
    """A depth model returning ``-(row + 100 col)`` of its own 32 px grid: each frame pixel must read the
    (inverted) value at the place the centred replicate-pad + resize put it."""
    s = 32
    r, c = _grid(s)
    path = _export(_Const(-(r + 100 * c)[None]), tmp_path / "depth.onnx", s)  # 1 x S x S, as DAViD's depth
    est = OnnxMapEstimator(path, "depth")
    frames = torch.rand(2, 3, height, width)
    depth = est(frames)
    assert depth.shape == (2, 1, height, width)
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    i, j = _grid(side)
    i, j = i[:height, :width] + top, j[:height, :width] + left
    model_r, model_c = (i + 0.5) * s / side - 0.5, (j + 0.5) * s / side - 0.5
    expected = model_r + 100 * model_c
    inner = (model_r > 0) & (model_r < s - 1) & (model_c > 0) & (model_c < s - 1)  # bilinear is exact inside
    assert inner.float().mean() > 0.5
    torch.testing.assert_close(depth[0, 0][inner], expected[inner], atol=1e-3, rtol=0)
    torch.testing.assert_close(depth[1], depth[0])
    padded, (t, lft) = pad_to_square(frames)
    assert (t, lft) == (top, left) and torch.equal(padded[..., top: top + height, left: left + width], frames)
    assert torch.equal(padded[..., :top, :], padded[..., top: top + 1, :].expand_as(padded[..., :top, :]))


def test_normals_are_bgr_fed_and_converted_to_the_opencv_frame(tmp_path):
    """The identity-like model sees BGR in [0, 1]; its OpenGL normals (n_z > 0 facing the camera) come back
    unit length in OpenCV axes (y, z flipped); with ``normal_frame="opencv"`` they are kept."""
    path = _export(_Pointwise(3.0), tmp_path / "normal.onnx", 24)
    n_model = torch.tensor([0.48, 0.6, 0.64])  # unit, z towards the camera
    b, g, r = ((n_model + 1) / 2).tolist()
    frames = torch.tensor([r, g, b])[None, :, None, None].expand(2, 3, 30, 50).clone()
    auto = OnnxMapEstimator(path, "normal")
    out = auto(frames)
    assert auto.frame == "opengl"
    torch.testing.assert_close(out, torch.tensor([0.48, -0.6, -0.64])[None, :, None, None].expand_as(out),
                               atol=1e-5, rtol=0)
    kept = OnnxMapEstimator(path, "normal", normal_frame="opencv")(frames)
    torch.testing.assert_close(kept, n_model[None, :, None, None].expand_as(kept), atol=1e-5, rtol=0)
    # a model already in OpenCV axes (n_z < 0 facing the camera) is detected and left as it is
    flipped = frames.clone()
    flipped[:, 0] = 1 - flipped[:, 0]  # R encodes n_z: now -0.64
    opencv = OnnxMapEstimator(path, "normal")
    assert torch.allclose(opencv(flipped)[:, 2], torch.tensor(-0.64), atol=1e-5) and opencv.frame == "opencv"


def test_multitask_outputs_are_picked_by_kind(tmp_path):
    """DAViD's multi-task graph returns [depth, normal, foreground]; its depth is not negated."""
    s = 16
    depth, normal, fg = torch.full((1, s, s), 2.5), torch.zeros(1, 3, s, s), torch.ones(1, 1, s, s)
    normal[:, 2] = -1
    path = _export(_Const(depth, normal, fg), tmp_path / "multi.onnx", s, ("depth", "normal", "foreground"))
    frames = torch.rand(1, 3, 20, 20)
    assert torch.allclose(OnnxMapEstimator(path, "depth")(frames), torch.tensor(2.5))
    n = OnnxMapEstimator(path, "normal")(frames)
    assert torch.allclose(n, torch.tensor([0.0, 0.0, -1.0])[None, :, None, None])


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"--normal-model.*EXPPORTRAIT_DAVID_NORMAL"):
        OnnxMapEstimator(tmp_path / "missing.onnx", "normal")
    monkeypatch.setenv("EXPPORTRAIT_DAVID_DEPTH", str(tmp_path / "gone.onnx"))
    with pytest.raises(FileNotFoundError, match=r"gone\.onnx.*\$EXPPORTRAIT_DAVID_DEPTH"):
        resolve_map_model(None, "depth")
    assert resolve_map_model(None, "depth", use_env=False) is None
    s = 8
    two = _export(_Const(torch.zeros(1, 2, s, s)), tmp_path / "two.onnx", s)
    with pytest.raises(ValueError, match=r"shape \[1, 2, 8, 8\].*B x 3 x S x S"):
        OnnxMapEstimator(two, "normal")
    depth_graph = _export(_Const(torch.zeros(1, s, s)), tmp_path / "depth.onnx", s)
    with pytest.raises(ValueError, match="another task"):
        OnnxMapEstimator(depth_graph, "normal")
    gray = tmp_path / "gray.onnx"
    torch.onnx.export(_Pointwise(1.0), torch.zeros(1, 1, s, s), str(gray), dynamo=False)
    with pytest.raises(ValueError, match="B x 3 x S x S"):
        OnnxMapEstimator(gray, "depth")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        OnnxMapEstimator(tmp_path / "junk.onnx", "depth")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'expportrait\[onnx\]'"):
        OnnxMapEstimator(depth_graph, "depth")


def _synth_folder(root, frames: int = 2, size: int = 32):
    """A minimal exp-synth-style subject: frames/, landmarks.npy and normals/."""
    (root / "frames").mkdir(parents=True)
    (root / "normals").mkdir()
    for i in range(frames):
        write_image(root / "frames" / f"{i:04d}.png", np.full((size, size, 3), 128, np.uint8))
        n = np.zeros((3, size, size), np.float32)
        n[2] = -1
        np.save(root / "normals" / f"{i:04d}.npy", n)
    np.save(root / "landmarks.npy", np.random.default_rng(0).uniform(5, 25, (frames, 68, 2)))
    return root


def test_map_sources_conflicts_and_environment(tmp_path, monkeypatch):
    s = 32
    normal_model = _export(_Const(torch.tensor([0.0, 0.6, 0.8])[None, :, None, None].expand(1, 3, s, s).clone()),
                           tmp_path / "n.onnx", s)
    depth_model = _export(_Const(torch.full((1, s, s), -3.0)), tmp_path / "d.onnx", s)
    subject = _synth_folder(tmp_path / "subject")
    # the folder's own normals are used, and an explicit model replaces them
    t = load_targets(subject)
    assert t.map_source == {"normal": f"folder:{subject / 'normals'}"}
    t = load_targets(subject, normal_model=normal_model, depth_model=depth_model)
    assert t.map_source == {"normal": f"onnx:{normal_model}", "depth": f"onnx:{depth_model}"}
    assert torch.allclose(t.normal, torch.tensor([0.0, -0.6, -0.8])[None, :, None, None])  # OpenGL -> OpenCV
    assert torch.allclose(t.depth, torch.tensor(3.0)) and torch.equal(t.mask, torch.ones_like(t.mask))
    # maps passed explicitly and a model for the same kind: an error
    with pytest.raises(ValueError, match="normal maps given twice"):
        load_targets(subject, maps=subject, normal_model=normal_model)
    # the environment fills missing kinds only
    monkeypatch.setenv("EXPPORTRAIT_DAVID_NORMAL", str(normal_model))
    monkeypatch.setenv("EXPPORTRAIT_DAVID_DEPTH", str(depth_model))
    t = add_maps(load_targets(subject))
    assert t.map_source == {"normal": f"folder:{subject / 'normals'}", "depth": f"onnx:{depth_model}"}
    assert torch.allclose(t.normal, torch.tensor([0.0, 0.0, -1.0])[None, :, None, None])
    monkeypatch.setenv("EXPPORTRAIT_DAVID_NORMAL", str(tmp_path / "never_read.onnx"))  # not needed: not checked
    assert add_maps(load_targets(subject)).map_source["normal"] == f"folder:{subject / 'normals'}"
    # exp-fit: the same conflict is a clean exit with the message
    from exphead.cli.fit import main

    code = main([str(subject), "-o", str(tmp_path / "out"), "--maps", str(subject), "--normal-model",
                 str(normal_model)])
    assert code == 2


@pytest.fixture(scope="module")
def small_model():
    return HeadModel(level=1)


def _camera_vertices(model, params, dg, df, camera):
    return camera.expand(params.batch_size).world_to_camera(model(params, dg, df).vertices)


def _centred(vertices):
    return vertices - vertices.mean(1, keepdim=True)


def test_fit_with_onnx_maps_end_to_end(tmp_path, small_model, caplog):
    """An oracle "DAViD": the frames encode the true normals (R, G) and depth (B, the background as the
    farthest depth); the normal model decodes them into OpenGL axes, the depth model returns them negated and
    rescaled, as DAViD's relative depth. The fit must take both maps from the models, align the relative depth
    by scale and shift, and recover the shape better than tracking alone."""
    from exphead.synthetic.subject import make_subject

    torch.manual_seed(0)
    truth_targets = synthetic_targets(small_model, seed=11, num_frames=FRAMES, image_size=SIZE)
    truth = make_subject(small_model, 11, FRAMES, height=SIZE, width=SIZE)
    m = truth_targets.mask
    d = truth_targets.depth
    lo, hi = d[m > 0].min(), d[m > 0].max()
    code = torch.where(m > 0, (d - lo) / (hi - lo), torch.ones_like(d))
    frames = torch.cat([(truth_targets.normal[:, :2] + 1) / 2, code], 1)  # RGB

    class NormalOracle(nn.Module):  # BGR in: x[:, 2] = R, x[:, 1] = G
        def forward(self, x):
            nx, ny = 2 * x[:, 2] - 1, 2 * x[:, 1] - 1
            nz = -torch.sqrt((1 - nx * nx - ny * ny).clamp_min(0))
            return torch.stack([nx, -ny, -nz], 1)  # OpenGL axes

    class DepthOracle(nn.Module):
        def forward(self, x):
            return -(7.0 * x[:, 0] + 2.0)  # 1 x S x S, closer = larger, as DAViD's depth model

    normal_model = _export(NormalOracle(), tmp_path / "normal.onnx", SIZE)
    depth_model = _export(DepthOracle(), tmp_path / "depth.onnx", SIZE)
    bare = FitTargets(truth_targets.landmarks, truth_targets.valid, SIZE, SIZE, frames=frames)
    est = add_maps(bare, normal_model, depth_model)
    inside = (m[:, 0] > 0) & (truth_targets.normal[:, 2] < 0)  # the encoding assumes visible normals (n_z < 0)
    cos = (est.normal * truth_targets.normal).sum(1)[inside]
    assert cos.min() > 1 - 1e-5  # the normals come back exactly, in OpenCV axes
    torch.testing.assert_close(est.depth[m > 0], (7.0 * code + 2.0)[m > 0], atol=1e-5, rtol=0)

    tracker = TrackerConfig(rigid_steps=40, steps=120)
    cfg = FitConfig(steps=60, frames_per_step=2, tracker=tracker, show_progress=False, checkpoint_every=1000,
                    normal_model=str(normal_model), depth_model=str(depth_model))
    with caplog.at_level(logging.INFO, logger="exphead.fitting"):
        head = fit_subject(bare, tmp_path / "fit", cfg, model=small_model)
    assert head.meta["map_source"] == {"normal": f"onnx:{normal_model}", "depth": f"onnx:{depth_model}"}
    assert head.meta["depth_alignment"] == "scale_shift" and head.meta["has_maps"]
    assert "depth_alignment=scale_shift" in caplog.text and "opengl normals" in caplog.text

    from exphead.fitting.data import load_tracking

    gt = _camera_vertices(small_model, truth.params, truth.delta_g, truth.delta_f, truth.camera.scaled(SIZE, SIZE))
    fit = _camera_vertices(small_model, head.params, head.delta_g, head.delta_f(), head.camera)
    tr = load_tracking(tmp_path / "fit" / "tracking.safetensors")
    trk = _camera_vertices(small_model, tr.params, None, None, tr.camera)
    # relative depth leaves the head's distance free, so compare shapes up to translation (mm)
    shape_fit = (_centred(fit) - _centred(gt)).norm(dim=-1).mean().item() * 1000
    shape_trk = (_centred(trk) - _centred(gt)).norm(dim=-1).mean().item() * 1000
    assert shape_fit < shape_trk - 1.0, (shape_fit, shape_trk)


def test_fit_without_maps_runs_on_landmarks_and_says_so(small_model, caplog):
    t = synthetic_targets(small_model, seed=3, num_frames=1, image_size=64)
    bare = FitTargets(t.landmarks, t.valid, 64, 64, frames=t.frames)
    cfg = FitConfig(steps=2, frames_per_step=1, tracker=TrackerConfig(rigid_steps=5, steps=5), show_progress=False)
    with caplog.at_level(logging.WARNING, logger="exphead.fitting"):
        head = fit_subject(bare, None, cfg, model=small_model)
    assert "fitting landmarks only" in caplog.text
    assert head.meta["map_source"] == "landmarks only" and head.meta["depth_alignment"] == "none"
    assert not head.meta["has_maps"] and head.num_frames == 1
