"""LPIPS (Zhang et al. 2018, paper Sec. 4.1) with its ImageNet backbone read from a local file.

The network is torchmetrics' port of the reference ``lpips`` package (same code, the same v0.1
linear-layer weights, which ship inside torchmetrics). Only the backbone — torchvision's ImageNet
AlexNet / VGG16 / SqueezeNet 1.1 — is not shipped; torchvision would download it, which never
happens here: the backbone is built with random weights (``weights=None``) and then overwritten from a
torchvision state-dict file found, in order, at

1. the ``backbone_path`` argument,
2. the environment variable ``EXPPORTRAIT_LPIPS_BACKBONE``,
3. torchvision's own hub cache, ``$TORCH_HOME/hub/checkpoints/<file>`` (e.g. ``alexnet-owt-7be5be79.pth``).

When none exists, a ``FileNotFoundError`` names the file and where to put it. The file is then checked as
``torch.hub`` checks a download: the first hex digits of its SHA-256 must equal the hash prefix in
torchvision's file name (``7be5be79`` for ``alexnet-owt-7be5be79.pth``), so randomly initialised or other
weights are refused (``ValueError``) whatever the file is called. ``verify=False`` skips the check (tests with
random weights); :attr:`LPIPS.backbone` records the path, the SHA-256 and whether it was verified.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchmetrics.functional.image.lpips import _NoTrainLpips
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

from exphead.metrics.frame_metric import FrameAveragedMetric, Reduction, frame_pair, reduce_frames

log = logging.getLogger(__name__)

LPIPS_BACKBONE_ENV = "EXPPORTRAIT_LPIPS_BACKBONE"
NetType = Literal["alex", "vgg", "squeeze"]
# torchvision's ImageNet weights of each backbone: only their file name and URL are used.
_BACKBONES = {
    "alex": AlexNet_Weights.IMAGENET1K_V1,
    "vgg": VGG16_Weights.IMAGENET1K_V1,
    "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


def _check_net_type(net_type: str) -> None:
    if net_type not in _BACKBONES:
        raise ValueError(f"net_type must be one of {sorted(_BACKBONES)}, got {net_type!r}.")


def backbone_file_name(net_type: NetType = "alex") -> str:
    """torchvision's file name for the ImageNet backbone, e.g. ``alexnet-owt-7be5be79.pth``."""
    _check_net_type(net_type)
    return Path(urlparse(_BACKBONES[net_type].url).path).name


def resolve_backbone_path(net_type: NetType = "alex", backbone_path: str | os.PathLike | None = None) -> Path:
    """Find the backbone weights file: argument, then ``$EXPPORTRAIT_LPIPS_BACKBONE``, then the hub cache.

    Raises:
        FileNotFoundError: when the chosen file does not exist, naming the file and the three places
            it may be put.
    """
    name = backbone_file_name(net_type)
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / name
    how = (
        f"LPIPS ({net_type}) needs torchvision's ImageNet weights {name} "
        f"({_BACKBONES[net_type].url}), which are never downloaded here. Put the file at "
        f"{hub_file}, or pass backbone_path=..., or set {LPIPS_BACKBONE_ENV}=/path/to/{name}."
    )
    if backbone_path is not None:
        source, path = "backbone_path", Path(backbone_path)
    elif os.environ.get(LPIPS_BACKBONE_ENV):
        source, path = LPIPS_BACKBONE_ENV, Path(os.environ[LPIPS_BACKBONE_ENV])
    else:
        source, path = "torch hub cache", hub_file
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no file at {path}. {how}")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_backbone_hash(path: str | os.PathLike, expected_name: str) -> str:
    """The SHA-256 of ``path``, checked against the hash prefix of ``expected_name`` as ``torch.hub`` checks it.

    Args:
        path: the weights file.
        expected_name: torchvision's file name, e.g. ``alexnet-owt-7be5be79.pth`` (prefix ``7be5be79``).

    Raises:
        ValueError: the name holds no hash prefix, or the file's SHA-256 does not start with it.
    """
    match = torch.hub.HASH_REGEX.search(expected_name)
    if match is None or not match.group(1):
        raise ValueError(f"{expected_name!r} holds no hash prefix (NAME-<hex>.pth)")
    prefix, digest = match.group(1), file_sha256(path)
    if not digest.startswith(prefix):
        raise ValueError(f"{path}: SHA-256 {digest[:16]}... does not start with {prefix}, the hash prefix of "
                         f"torchvision's {expected_name}: these are not its ImageNet weights (random or other "
                         "weights give meaningless LPIPS). Place the file torchvision publishes under that name.")
    return digest


def backbone_record(net_type: NetType = "alex", backbone_path: str | os.PathLike | None = None,
                    verify: bool = True) -> dict:
    """Where the backbone comes from: ``{"net_type", "file", "path", "sha256", "verified"}``.

    Raises:
        FileNotFoundError: no file (see :func:`resolve_backbone_path`).
        ValueError: ``verify`` and the file is not torchvision's (see :func:`check_backbone_hash`).
    """
    path = resolve_backbone_path(net_type, backbone_path)
    name = backbone_file_name(net_type)
    digest = check_backbone_hash(path, name) if verify else file_sha256(path)
    return {"net_type": net_type, "file": name, "path": str(path.resolve()), "sha256": digest, "verified": verify}


def _load_backbone(trunk: nn.Module, path: Path) -> None:
    """Copy a torchvision state dict (``features.<i>.*``) into LPIPS' trunk.

    torchmetrics' trunks hold torchvision's ``features[i]`` layers in ``nn.Sequential`` slices under
    the name ``str(i)``, so layer ``<i>`` of a slice reads the file's ``features.<i>.*`` tensors.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    params = {}
    for block in trunk.modules():
        if isinstance(block, nn.Sequential):
            for index, layer in block.named_children():
                params.update({f"features.{index}.{name}": p for name, p in layer.named_parameters()})
    for key, param in params.items():
        if key not in state or state[key].shape != param.shape:
            found = tuple(state[key].shape) if key in state else "no such key"
            raise ValueError(
                f"{path} is not a torchvision state dict of this backbone: {key!r} should be "
                f"{tuple(param.shape)}, found {found} (keys e.g. {list(state)[:3]}). "
                "Save it with torch.save(model.state_dict(), path)."
            )
    if len(params) != len(list(trunk.parameters())):
        raise ValueError(f"LPIPS trunk layout not understood ({type(trunk).__name__}); cannot load {path}.")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(state[key])


def load_lpips_network(net_type: NetType = "alex", backbone_path: str | os.PathLike | None = None,
                       verify: bool = True) -> nn.Module:
    """Build the LPIPS network (v0.1 linear layers, frozen, always in eval mode) with a local backbone.

    The returned module maps two batches ``N x 3 x H x W`` in ``[0, 1]`` (with ``normalize=True``) to
    scores ``N x 1 x 1 x 1``; its attribute ``backbone`` is :func:`backbone_record`'s dict. ``verify``: refuse a
    file whose SHA-256 does not match torchvision's hash prefix (module docstring).
    """
    record = backbone_record(net_type, backbone_path, verify)
    # pnet_rand=True builds torchvision's trunk with weights=None: torchvision never downloads.
    net = _NoTrainLpips(net=net_type, pretrained=True, pnet_rand=True)
    _load_backbone(net.net, Path(record["path"]))
    net.backbone = record
    log.info("LPIPS %s backbone loaded from %s (sha256 %s, verified: %s)", net_type, record["path"],
             record["sha256"][:16], verify)
    return net


def lpips_per_frame(preds: Tensor, target: Tensor, net: nn.Module) -> Tensor:
    """LPIPS of each frame: ``N x 3 x H x W`` pairs in ``[0, 1]`` -> ``N`` values."""
    dtype = next(net.parameters()).dtype
    return net(preds.to(dtype), target.to(dtype), normalize=True).flatten()


def lpips(
    preds: Tensor,
    target: Tensor,
    net_type: NetType = "alex",
    backbone_path: str | os.PathLike | None = None,
    reduction: Reduction = "mean",
    verify: bool = True,
) -> Tensor:
    r"""Learned perceptual image patch similarity, averaged over frames.

    .. math::
        \mathrm{LPIPS}(x, y) = \sum_l \frac{1}{H_l W_l} \sum_{h, w}
        \lVert w_l \odot (\hat f^l_{hw}(x) - \hat f^l_{hw}(y)) \rVert_2^2

    with :math:`\hat f^l` the channel-normalised activations of backbone layer :math:`l` and
    :math:`w_l` the learned v0.1 weights. Builds the network on every call; use :class:`LPIPS` to
    evaluate many batches.

    Args:
        preds: generated frames ``N x 3 x H x W`` (or videos ``B x F x 3 x H x W``) in ``[0, 1]``.
        target: ground-truth frames of the same shape.
        net_type: backbone, ``"alex"`` (the usual choice), ``"vgg"`` or ``"squeeze"``.
        backbone_path: torchvision state-dict file of the backbone (see the module docstring).
        reduction: ``"mean"`` over frames or ``"none"`` for the ``N`` per-frame values.
        verify: check the file's SHA-256 against torchvision's hash prefix (off only for random test weights).

    Example (random backbone weights, hence ``verify=False``):
        >>> import tempfile, torch, torchvision
        >>> path = tempfile.mkdtemp() + "/alexnet.pth"
        >>> _ = torch.manual_seed(0)
        >>> torch.save(torchvision.models.alexnet().state_dict(), path)
        >>> frames = torch.rand(2, 3, 64, 64)
        >>> lpips(frames, frames, backbone_path=path, verify=False)
        tensor(0.)
    """
    preds, target = frame_pair(preds, target)
    net = load_lpips_network(net_type, backbone_path, verify).to(preds.device)
    return reduce_frames(lpips_per_frame(preds, target, net), reduction)


class LPIPS(FrameAveragedMetric):
    r"""Learned perceptual image patch similarity (lower is better), mean over frames.

    .. math::
        \mathrm{LPIPS}(x, y) = \sum_l \frac{1}{H_l W_l} \sum_{h, w}
        \lVert w_l \odot (\hat f^l_{hw}(x) - \hat f^l_{hw}(y)) \rVert_2^2

    ``update(preds, target)`` takes frames ``N x 3 x H x W`` or videos ``B x F x 3 x H x W`` in
    ``[0, 1]``. The backbone weights come from a local file (module docstring); a missing file raises
    ``FileNotFoundError`` and a file that is not torchvision's ``ValueError`` here, in ``__init__``.
    :attr:`backbone` records the file (path, SHA-256, verified).

    Args:
        net_type: backbone, ``"alex"`` (the usual choice), ``"vgg"`` or ``"squeeze"``.
        backbone_path: torchvision state-dict file of the backbone.
        verify: check the file's SHA-256 against torchvision's hash prefix (off only for random test weights).

    Example (random backbone weights, hence ``verify=False``):
        >>> import tempfile, torch, torchvision
        >>> path = tempfile.mkdtemp() + "/alexnet.pth"
        >>> _ = torch.manual_seed(0)
        >>> torch.save(torchvision.models.alexnet().state_dict(), path)
        >>> metric = LPIPS(backbone_path=path, verify=False)
        >>> frames = torch.rand(2, 3, 64, 64)
        >>> metric.update(frames, frames)
        >>> metric.compute()
        tensor(0.)
    """

    is_differentiable = True
    higher_is_better = False

    def __init__(
        self,
        net_type: NetType = "alex",
        backbone_path: str | os.PathLike | None = None,
        verify: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.net = load_lpips_network(net_type, backbone_path, verify)
        self.backbone: dict = self.net.backbone

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-frame LPIPS ``N``."""
        return lpips_per_frame(preds, target, self.net)


__all__ = ["LPIPS", "LPIPS_BACKBONE_ENV", "backbone_file_name", "backbone_record", "check_backbone_hash", "file_sha256",
           "load_lpips_network", "lpips"]
