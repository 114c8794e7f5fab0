"""Speed and reference agreement of the Table 1 metrics (exphead.metrics) at 512 x 512 on CPU.

For each metric: frames per second when 16 frames go through one ``update`` (``batched_fps``) and
when they go one ``update`` per frame (``per_frame_fps``), and the largest absolute difference of the
per-frame values from an independent reference implementation (``reference``, ``max_abs_diff``).

Frames are distorted copies of ``skimage.data.astronaut()`` (shift, brightness, noise, blur) against
the original. LPIPS uses a seeded random AlexNet backbone written to a temporary file (the ImageNet
weights cannot be downloaded here); AED / APD use a trivial extractor (pooled image statistics), so
their rows time the metric, not exphead's tracker. CSIM runs its embedder on both the generated
and the reference frame. ``meta["face_detectors"]`` compares the two face detectors on astronaut
variants (found / tried, milliseconds per frame); ``meta["torchmetrics_ssim"]`` times torchmetrics' SSIM
on the same frames; ``meta["load_average_1min"]`` is the machine's load before and after (timings from a
shared machine are only as good as that).

Usage: python benchmarks/metrics_speed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from exphead.media import to_uint8
from exphead.metrics import (  # noqa: E402
    AED,
    APD,
    CSIM,
    LPIPS,
    PSNR,
    SSIM,
    DlibFaceEmbedder,
    L1Distance,
    MotionEstimate,
)
from exphead.tracking.faces import DlibFaceDetector, MTCNNFaceDetector  # noqa: E402

log = logging.getLogger("metrics_speed")
SIZE = 512


def make_frames(num: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(generated, reference) ``num x 3 x 512 x 512``: distorted astronauts and the original."""
    from skimage import data

    reference = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for i in range(num):  # every frame differs from the reference (no infinite PSNR)
        dy, dx = i % 5, -(i % 3)
        shifted = torch.roll(reference, shifts=(dy, dx), dims=(2, 3))
        frame = shifted * (1 + 0.02 * (i % 4)) + 0.01 * (i % 3)
        if i % 4 == 3:
            frame = F.avg_pool2d(F.pad(frame, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        frame = frame + 0.01 * (1 + i % 2) * torch.randn(frame.shape, generator=gen)
        frames.append(frame.clamp(0, 1))
    return torch.cat(frames), reference.expand(num, -1, -1, -1).contiguous()


def _hwc(frames: torch.Tensor) -> list[np.ndarray]:
    return [f.permute(1, 2, 0).double().numpy() for f in frames]


def _trivial_extractor(frames: torch.Tensor) -> MotionEstimate:
    """Expression: 10 x 10 pooled grey levels + the 3 channel means (103 values); pose: channel means - 0.5."""
    grey = F.adaptive_avg_pool2d(frames.mean(1, keepdim=True), 10).flatten(1)
    means = frames.mean(dim=(2, 3))
    return MotionEstimate(torch.cat([grey, means], dim=1), means - 0.5)


def _time_updates(metric: Any, preds: torch.Tensor, target: torch.Tensor, batch: int, repeats: int) -> float:
    """Best frames-per-second over ``repeats`` passes of ``update`` in chunks of ``batch`` frames."""
    best = float("inf")
    for _ in range(repeats):
        metric.reset()
        start = time.perf_counter()
        for i in range(0, len(preds), batch):
            metric.update(preds[i : i + batch], target[i : i + batch])
        metric.compute()
        best = min(best, time.perf_counter() - start)
    return len(preds) / best


def _references(
    preds: torch.Tensor, target: torch.Tensor, backbone: dict[str, torch.Tensor], lpips_net: torch.nn.Module
) -> dict[str, Any]:
    """Per-frame reference values ``{metric: (name, values, ours)}`` where ``ours`` computes ours per frame."""
    import lpips as lpips_package
    from scipy.spatial.transform import Rotation
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from exphead.metrics import csim, expression_distance, l1_distance, pose_distance, psnr, ssim
    from exphead.metrics.lpips import lpips_per_frame

    p_np, t_np = _hwc(preds), _hwc(target)
    refs: dict[str, Any] = {
        "PSNR": ("skimage.metrics.peak_signal_noise_ratio", [peak_signal_noise_ratio(t, p, data_range=1)
                                                           for p, t in zip(p_np, t_np)],
                 lambda: psnr(preds, target, reduction="none")),
        "SSIM": ("skimage.metrics.structural_similarity(gaussian, sigma=1.5, population cov.)",
                 [structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1, channel_axis=-1) for p, t in zip(p_np, t_np)],
                 lambda: ssim(preds, target, reduction="none")),
        "L1": ("numpy mean(|a - b|)", [np.abs(p - t).mean() for p, t in zip(p_np, t_np)],
               lambda: l1_distance(preds, target, reduction="none")),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips_package.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    for _, block in net.net.named_children():
        for index, layer in block.named_children():
            for name, param in layer.named_parameters():
                param.data.copy_(backbone[f"features.{index}.{name}"])
    with torch.no_grad():
        values = net(preds, target, normalize=True).flatten().tolist()
    refs["LPIPS"] = ("lpips 0.1.4 package, same backbone weights", values,
                     lambda: lpips_per_frame(preds, target, lpips_net))

    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    shape5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    recognizer = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def descriptor(image: np.ndarray) -> np.ndarray:
        rects, scores, _ = detector.run(image, 0, 0.0)
        return np.array(recognizer.compute_face_descriptor(image, shape5(image, rects[int(np.argmax(scores))])))

    p_u8, t_u8 = to_uint8(preds), to_uint8(target)
    values = []
    for p, t in zip(p_u8, t_u8):
        a, b = descriptor(p), descriptor(t)
        values.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    refs["CSIM"] = ("dlib HOG detector + 5-point chip + ResNet descriptor, numpy cosine", values,
                    lambda: csim(preds, target, reduction="none"))

    pm, tm = _trivial_extractor(preds), _trivial_extractor(target)
    refs["AED"] = ("numpy mean(|psi_a - psi_b|)", np.abs(pm.expression.numpy() - tm.expression.numpy()).mean(1),
                   lambda: expression_distance(pm.expression, tm.expression))
    refs["APD"] = ("numpy mean(|omega_a - omega_b|)", np.abs(pm.head_pose.numpy() - tm.head_pose.numpy()).mean(1),
                   lambda: pose_distance(pm.head_pose, tm.head_pose))
    geodesic = (Rotation.from_rotvec(pm.head_pose.double().numpy()).inv()
                * Rotation.from_rotvec(tm.head_pose.double().numpy())).magnitude()
    refs["APD (geodesic)"] = ("scipy Rotation magnitude of relative rotation", geodesic,
                              lambda: pose_distance(pm.head_pose, tm.head_pose, distance="geodesic"))
    return refs


def _detector_comparison(repeats: int) -> dict[str, Any]:
    """Faces found and ms per frame of MTCNN and dlib HOG on astronaut variants."""
    from skimage import data, transform

    image = data.astronaut()
    variants = [image, np.ascontiguousarray(image[:, ::-1]), np.clip(image * 1.3, 0, 255).astype(np.uint8)]
    variants += [(transform.rotate(image, angle) * 255).astype(np.uint8) for angle in (15, 30, 45)]
    variants += [(transform.resize(image, (s, s)) * 255).astype(np.uint8) for s in (384, 256, 192)]
    result = {}
    detectors: dict[str, Callable[[np.ndarray], Any]] = {
        "mtcnn(min_face_size=40)": MTCNNFaceDetector(),
        "mtcnn(min_face_size=20)": MTCNNFaceDetector(min_face_size=20),
        "dlib_hog(upsample=0)": DlibFaceDetector(upsample=0, cnn_fallback=False),
        "dlib_hog(upsample=1)": DlibFaceDetector(upsample=1, cnn_fallback=False),
    }
    for name, detector in detectors.items():
        found = sum(bool(detector.detect(v)) for v in variants)
        detector.detect(image)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            detector.detect(image)
            best = min(best, time.perf_counter() - start)
        result[name] = {"found": f"{found}/{len(variants)}", "ms_per_512_frame": round(1000 * best, 1)}
    return result


def _torchmetrics_ssim(preds: torch.Tensor, target: torch.Tensor, expected: list[float], repeats: int) -> dict:
    """torchmetrics' functional SSIM (same settings) on the same frames: fps and difference from skimage."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    def run() -> torch.Tensor:
        return structural_similarity_index_measure(
            preds, target, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none"
        )

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        values = run()
        best = min(best, time.perf_counter() - start)
    diff = float(np.max(np.abs(values.double().numpy() - np.asarray(expected))))
    return {"batched_fps": round(len(preds) / best, 2), "max_abs_diff_vs_skimage": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 frames, one timing pass")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and meta here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    num, repeats = (4, 1) if args.quick else (16, 3)
    load_before = os.getloadavg()[0]
    preds, target = make_frames(num)

    torch.manual_seed(0)
    import torchvision

    features = torchvision.models.alexnet().features
    backbone = {f"features.{k}": v for k, v in features.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alexnet-owt-7be5be79.pth"
        torch.save(backbone, path)
        lpips_metric = LPIPS(backbone_path=path)
    metrics: dict[str, Any] = {
        "PSNR": PSNR(),
        "SSIM": SSIM(),
        "L1": L1Distance(),
        "LPIPS": lpips_metric,
        "CSIM": CSIM(DlibFaceEmbedder()),
        "AED": AED(_trivial_extractor),
        "APD": APD(_trivial_extractor),
        "APD (geodesic)": APD(_trivial_extractor, distance="geodesic"),
    }
    refs = _references(preds, target, backbone, lpips_metric.net)
    rows = []
    for name, metric in metrics.items():
        log.info("timing %s", name)
        batched = _time_updates(metric, preds, target, num, repeats)
        per_frame = _time_updates(metric, preds, target, 1, repeats)
        reference, expected, ours = refs[name]
        with torch.no_grad():
            values = ours().double().numpy()
        diff = float(np.max(np.abs(values - np.asarray(expected))))
        rows.append({
            "metric": name,
            "batched_fps": round(batched, 2),
            "per_frame_fps": round(per_frame, 2),
            "batched_over_per_frame": round(batched / per_frame, 2),
            "reference": reference,
            "max_abs_diff": diff,
            "mean_value": float(np.mean(values)),
        })
    print_table(rows)
    meta = machine_meta()
    meta.update({
        "frames": num,
        "resolution": f"{SIZE}x{SIZE}",
        "timing": f"best of {repeats} passes; batched = {num} frames per update, per_frame = 1 frame per update",
        "frames_source": "skimage.data.astronaut() shifted/brightened/noised/blurred vs. the original",
        "lpips_backbone": "seeded random torchvision AlexNet features (torch.manual_seed(0)) in a temp file; "
                          "the ImageNet weights are not available offline, so values are not real LPIPS",
        "csim_embedder": "DlibFaceEmbedder (MTCNN min_face_size=40 + dlib 5-point + ResNet descriptor), "
                         "run on generated and reference frames",
        "aed_apd_extractor": "trivial (pooled image statistics), the tracker's cost is measured elsewhere",
        "face_detectors": _detector_comparison(repeats),
        "torchmetrics_ssim": _torchmetrics_ssim(preds, target, refs["SSIM"][1], repeats),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    })
    log.info("face detectors: %s", meta["face_detectors"])
    if args.json:
        write_json(args.json, "metrics_speed", rows, meta)


if __name__ == "__main__":
    main()
