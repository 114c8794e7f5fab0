"""PSNR / SSIM / L1 against scikit-image, LPIPS against the ``lpips`` package, AED / APD math."""

from __future__ import annotations

import math

import lpips as lpips_reference
import numpy as np
import pytest
import torch
import torchvision
from scipy.spatial.transform import Rotation
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from exphead.metrics import (
    AED,
    APD,
    LPIPS,
    LPIPS_BACKBONE_ENV,
    PSNR,
    SSIM,
    L1Distance,
    MotionEstimate,
    aed,
    apd,
    expression_distance,
    l1_distance,
    lpips,
    pose_distance,
    psnr,
    ssim,
)
from exphead.metrics.lpips import (
    backbone_file_name,
    backbone_record,
    check_backbone_hash,
    file_sha256,
    resolve_backbone_path,
)
from exphead.metrics.motion import rotation_angle_between


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def astronaut_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(reference, distorted) float64 HxWx3 pairs: additive noise, Gaussian blur, brightness."""
    ref = data.astronaut().astype(np.float64) / 255
    rng = np.random.default_rng(0)
    noisy = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    blurred = filters.gaussian(ref, sigma=2, channel_axis=-1)
    brighter = np.clip(ref * 1.1 + 0.02, 0, 1)
    return [(ref, noisy), (ref, blurred), (ref, brighter)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_psnr_ssim_l1_match_skimage(astronaut_pairs, dtype) -> None:
    target = torch.cat([_to_tensor(ref) for ref, _ in astronaut_pairs]).to(dtype)
    preds = torch.cat([_to_tensor(other) for _, other in astronaut_pairs]).to(dtype)
    expected_psnr = [peak_signal_noise_ratio(ref, other, data_range=1) for ref, other in astronaut_pairs]
    expected_ssim = [
        structural_similarity(
            ref, other, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1
        )
        for ref, other in astronaut_pairs
    ]
    expected_l1 = [np.abs(ref - other).mean() for ref, other in astronaut_pairs]
    torch.testing.assert_close(psnr(preds, target, reduction="none").double(), torch.tensor(expected_psnr),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(ssim(preds, target, reduction="none").double(), torch.tensor(expected_ssim),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(l1_distance(preds, target, reduction="none").double(), torch.tensor(expected_l1),
                               atol=1e-6, rtol=0)
    assert min(expected_ssim) < 0.9 and min(expected_psnr) < 30  # the distortions are not negligible


def test_identical_frames_give_ideal_values() -> None:
    frames = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    assert torch.isinf(psnr(frames, frames)) and psnr(frames, frames) > 0
    assert ssim(frames, frames).item() == pytest.approx(1.0, abs=1e-6)
    assert l1_distance(frames, frames).item() == 0.0


def test_classes_accumulate_frame_means_and_accept_videos(astronaut_pairs) -> None:
    ref, _ = astronaut_pairs[0]
    target = torch.cat([_to_tensor(p[0]) for p in astronaut_pairs]).float()[..., :128, :160]
    preds = torch.cat([_to_tensor(p[1]) for p in astronaut_pairs]).float()[..., :128, :160]
    for metric, functional in [(PSNR(), psnr), (SSIM(), ssim), (L1Distance(), l1_distance)]:
        metric.update(preds[:1], target[:1])  # one update of 1 frame, one of a 1 x 2-frame video
        metric.update(preds[None, 1:], target[None, 1:])
        per_frame = functional(preds, target, reduction="none")
        assert per_frame.shape == (3,)
        assert int(metric.num_frames) == 3
        torch.testing.assert_close(metric.compute(), per_frame.mean(), atol=1e-5, rtol=0)
        metric.reset()
        assert int(metric.num_frames) == 0


def test_class_flags() -> None:
    assert PSNR.higher_is_better and SSIM.higher_is_better
    assert not L1Distance.higher_is_better and not LPIPS.higher_is_better
    assert not AED.higher_is_better and not APD.higher_is_better
    for cls in (PSNR, SSIM, L1Distance, LPIPS, AED, APD):
        assert cls.full_state_update is False
    assert PSNR.is_differentiable and SSIM.is_differentiable and LPIPS.is_differentiable
    assert not AED.is_differentiable


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        ssim(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="float"):
        l1_distance(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))


def test_ssim_gradient_matches_finite_differences() -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, 14, 15, generator=gen, dtype=torch.float64)
    preds = (target + 0.1 * torch.rand(2, 3, 14, 15, generator=gen, dtype=torch.float64)).requires_grad_()
    # fast mode: finite differences of the Jacobian along random directions (cheap, still exact to 1e-6)
    assert torch.autograd.gradcheck(lambda x: ssim(x, target, reduction="none"), (preds,), fast_mode=True)


# ---------------------------------------------------------------- LPIPS


def _random_backbone(tmp_path, net_type: str, seed: int = 0):
    """A seeded random torchvision state dict of the backbone's ``features`` (the classifier, unused by
    LPIPS, is left out to keep the file small)."""
    torch.manual_seed(seed)
    features = {"alex": torchvision.models.alexnet, "squeeze": torchvision.models.squeezenet1_1}[net_type]().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / backbone_file_name(net_type)
    torch.save(state, path)
    return path, state


@pytest.mark.filterwarnings("ignore::UserWarning")  # the lpips package calls torchvision's old `pretrained`
@pytest.mark.parametrize("net_type", ["alex", "squeeze"])
def test_lpips_matches_reference_package(tmp_path, net_type) -> None:
    path, state = _random_backbone(tmp_path, net_type)
    reference = lpips_reference.LPIPS(net=net_type, version="0.1", pnet_rand=True, verbose=False)
    for _, block in reference.net.named_children():  # torchvision features.<i> -> slice<k>.<i>
        for layer_name, layer in block.named_children():
            for param_name, param in layer.named_parameters():
                param.data.copy_(state[f"features.{layer_name}.{param_name}"])
    astronaut = torch.nn.functional.interpolate(_to_tensor(data.astronaut()).float() / 255, size=(96, 96))
    gen = torch.Generator().manual_seed(3)
    target = torch.cat([astronaut, torch.rand(1, 3, 96, 96, generator=gen)])
    preds = (target + 0.1 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        expected = reference(preds, target, normalize=True).flatten()
    ours = lpips(preds, target, net_type=net_type, backbone_path=path, reduction="none", verify=False)
    assert expected.min() > 0.01  # a non-trivial comparison
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    metric = LPIPS(net_type=net_type, backbone_path=path, verify=False)
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    torch.testing.assert_close(metric.compute(), expected.mean(), atol=1e-5, rtol=0)
    metric.reset()
    metric.update(target, target)
    assert metric.compute().item() == 0.0


def test_lpips_backbone_lookup_order_and_never_downloads(tmp_path, monkeypatch) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(LPIPS_BACKBONE_ENV, raising=False)
    name = backbone_file_name("alex")
    assert name == "alexnet-owt-7be5be79.pth"
    with pytest.raises(FileNotFoundError, match=name) as error:
        LPIPS()
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in str(error.value)
    assert LPIPS_BACKBONE_ENV in str(error.value)

    hub_file = tmp_path / "torch_home" / "hub" / "checkpoints" / name
    hub_file.parent.mkdir(parents=True)
    _random_backbone(hub_file.parent, "alex", seed=2)
    assert resolve_backbone_path("alex") == hub_file
    env_file, _ = _random_backbone(tmp_path, "alex", seed=1)
    monkeypatch.setenv(LPIPS_BACKBONE_ENV, str(env_file))
    assert resolve_backbone_path("alex") == env_file
    assert resolve_backbone_path("alex", hub_file) == hub_file
    monkeypatch.setenv(LPIPS_BACKBONE_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match=LPIPS_BACKBONE_ENV):
        resolve_backbone_path("alex")
    LPIPS(backbone_path=hub_file, verify=False)  # builds without any download


def test_lpips_rejects_a_file_of_another_network(tmp_path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="'features.0.weight' should be"):
        LPIPS(backbone_path=path, verify=False)


def test_lpips_refuses_random_weights_under_torchvisions_file_name(tmp_path, monkeypatch) -> None:
    """A random AlexNet saved as alexnet-owt-7be5be79.pth: its SHA-256 does not start with 7be5be79, so the
    metric (and anything built on it: exp-bench's LPIPS column) refuses it, wherever it is found."""
    path, _ = _random_backbone(tmp_path, "alex")
    assert path.name == "alexnet-owt-7be5be79.pth"
    digest = file_sha256(path)
    assert not digest.startswith("7be5be79")
    with pytest.raises(ValueError, match=r"does not start with 7be5be79") as error:
        LPIPS(backbone_path=path)
    assert digest[:16] in str(error.value)
    monkeypatch.setenv(LPIPS_BACKBONE_ENV, str(path))
    with pytest.raises(ValueError, match="7be5be79"):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    # the check itself: a file passes under a name carrying its own hash prefix, as torch.hub checks downloads
    assert check_backbone_hash(path, f"alexnet-owt-{digest[:8]}.pth") == digest
    with pytest.raises(ValueError, match="no hash prefix"):
        check_backbone_hash(path, "alexnet.pth")
    record = LPIPS(backbone_path=path, verify=False).backbone
    assert record == {"net_type": "alex", "file": "alexnet-owt-7be5be79.pth", "path": str(path.resolve()),
                      "sha256": digest, "verified": False}
    assert backbone_record("alex", path, verify=False) == record


# ---------------------------------------------------------------- AED / APD


def test_expression_distance_is_mean_absolute_difference() -> None:
    pred = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, -0.1, 0.2, -0.2]])
    torch.testing.assert_close(expression_distance(pred, target), torch.tensor([0.875, 0.15]))
    torch.testing.assert_close(aed(pred, target), torch.tensor(0.5125))
    with pytest.raises(ValueError, match="same shape"):
        aed(pred, target[:, :3])


def test_geodesic_pose_distance_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    first = Rotation.random(64, random_state=rng)
    # relative rotations with angles spread over (0, pi), including near 0 and near pi
    angles = np.concatenate([[1e-4, 1e-2, math.pi - 1e-3], rng.uniform(0, math.pi, 61)])
    axes = rng.normal(size=(64, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    second = first * Rotation.from_rotvec(axes * angles[:, None])
    pred = torch.from_numpy(first.as_rotvec())
    target = torch.from_numpy(second.as_rotvec())
    angle = pose_distance(pred, target, distance="geodesic")
    torch.testing.assert_close(angle, torch.from_numpy(angles), atol=1e-6, rtol=0)
    torch.testing.assert_close(rotation_angle_between(target, pred), angle, atol=1e-6, rtol=0)
    assert pose_distance(pred, pred, distance="geodesic").abs().max() < 1e-6


def test_l1_pose_distance_and_apd() -> None:
    pred = torch.tensor([[0.1, 0.2, -0.3], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.3, 0.0]])
    torch.testing.assert_close(pose_distance(pred, target), torch.tensor([0.2, 0.1]))
    torch.testing.assert_close(apd(pred, target), torch.tensor(0.15))
    # a rotation about one axis: both distances give the angle (l1 divides it by 3)
    yaw = torch.tensor([[0.0, 0.4, 0.0]])
    assert apd(yaw, torch.zeros(1, 3), distance="geodesic").item() == pytest.approx(0.4, abs=1e-6)
    assert apd(yaw, torch.zeros(1, 3)).item() == pytest.approx(0.4 / 3, abs=1e-7)
    with pytest.raises(ValueError, match="B x 3"):
        apd(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="geodesic"):
        APD(lambda frames: None, distance="l2")


class _FakeExtractor:
    """Expression = per-channel means and a quadrant mean (4 values); pose = channel means (rad)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frames: torch.Tensor) -> MotionEstimate:
        self.calls += 1
        means = frames.mean(dim=(2, 3))
        quadrant = frames[:, :, : frames.shape[2] // 2, : frames.shape[3] // 2].mean(dim=(1, 2, 3))
        return MotionEstimate(torch.cat([means, quadrant[:, None]], dim=1), means, torch.zeros_like(means))


def test_aed_apd_classes_with_a_fake_extractor() -> None:
    gen = torch.Generator().manual_seed(5)
    preds, target = torch.rand(2, 3, 3, 8, 8, generator=gen), torch.rand(2, 3, 3, 8, 8, generator=gen)
    extractor = _FakeExtractor()
    pred_params, target_params = extractor(preds.flatten(0, 1)), extractor(target.flatten(0, 1))
    metrics = {"aed": AED(extractor), "apd": APD(extractor), "geo": APD(extractor, distance="geodesic")}
    for metric in metrics.values():
        metric.update(preds[:1], target[:1])  # a video of 3 frames, then 3 more frames
        metric.update(preds[1], target[1])
    expected = {
        "aed": aed(pred_params.expression, target_params.expression),
        "apd": apd(pred_params.head_pose, target_params.head_pose),
        "geo": apd(pred_params.head_pose, target_params.head_pose, distance="geodesic"),
    }
    for key, metric in metrics.items():
        assert int(metric.num_frames) == 6
        torch.testing.assert_close(metric.compute(), expected[key], atol=1e-6, rtol=0)
    assert expected["aed"] > 0.01 and expected["geo"] > expected["apd"]
