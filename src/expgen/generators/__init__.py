"""Video generators behind one interface (:class:`Generator`): ``geometric`` (weights-free) and ``diffusion``
(the Wan DiT of Sec. 3.3)."""

from __future__ import annotations

from typing import Literal

from .base import Generator, GeneratorInputs, GeneratorOutput
from .diffusion import Carry, DiffusionGenerator, check_overlap
from .geometric import GeometricGenerator

GeneratorName = Literal["auto", "geometric", "diffusion"]


def choose_generator(name: GeneratorName, weights: str | None) -> tuple[str, str]:
    """The generator that runs for ``name`` and ``weights``, and why."""
    if name != "auto":
        return name, "requested"
    if weights:
        return "diffusion", "weights given"
    return "geometric", "no generator weights given (weights-free default)"


def make_generator(name: GeneratorName = "auto", weights: str | None = None, device: str = "cpu",
                   dtype: str = "float32", window: int = 17, seed: int = 0, overlap: int = 4,
                   carry: Carry = "blend") -> tuple[Generator, str]:
    """Build (and load the weights of) the generator :func:`choose_generator` picks; returns it and the reason.

    Raises:
        FileNotFoundError: the diffusion generator without (existing) weights.
    """
    chosen, reason = choose_generator(name, weights)
    if chosen == "geometric":
        return GeometricGenerator(), reason
    if chosen != "diffusion":
        raise ValueError(f"generator must be 'auto', 'geometric' or 'diffusion', got {name!r}")
    if not weights:
        raise FileNotFoundError("the diffusion generator needs weights: pass --generator_weights DIR (a folder "
                                "written by DiffusionModule.save_pretrained)")
    return DiffusionGenerator(weights, device, dtype, window, seed, overlap, carry), reason


__all__ = ["Carry", "DiffusionGenerator", "Generator", "GeneratorInputs", "GeneratorName", "GeneratorOutput",
           "GeometricGenerator", "check_overlap", "choose_generator", "make_generator"]
