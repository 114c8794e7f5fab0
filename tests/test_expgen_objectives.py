"""Objectives against diffusers' schedulers and closed forms; samplers with an oracle denoiser."""

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from expgen.objectives import EpsilonObjective, FlowMatchingObjective, make_objective
from expgen.sampling import sample_latents


def test_flow_noising_matches_diffusers_scale_noise():
    obj = FlowMatchingObjective(shift=3.0)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(10)
    x, eps = torch.randn(4, 2, 3, 4, 4), torch.randn(4, 2, 3, 4, 4)
    t = sched.timesteps[[0, 3, 6, 9]]
    expected = torch.stack([sched.scale_noise(x[i:i + 1], t[i:i + 1], eps[i:i + 1])[0] for i in range(4)])
    torch.testing.assert_close(obj.add_noise(x, eps, t), expected)
    torch.testing.assert_close(obj.target(x, eps), eps - x)


def test_flow_timestep_shift_distribution():
    """σ = s u / (1 + (s - 1) u) with u ~ U(0, 1): the median is s / (1 + s), P(σ < 0.5) = 1 / (1 + s)."""
    obj = FlowMatchingObjective(shift=3.0)
    t = obj.sample_timesteps(40000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() < 1000
    assert abs(t.median().item() - 750.0) < 10.0
    assert abs((t < 500).float().mean().item() - 0.25) < 0.01


def test_epsilon_noising_matches_closed_form():
    obj = EpsilonObjective()
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1 - betas, 0)
    x, eps = torch.randn(3, 4, 2, 2, 2), torch.randn(3, 4, 2, 2, 2)
    t = torch.tensor([0.0, 500.0, 999.0])
    a = alpha_bar[t.long()].float().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(obj.add_noise(x, eps, t), a.sqrt() * x + (1 - a).sqrt() * eps)
    assert torch.equal(obj.target(x, eps), eps)
    ts = obj.sample_timesteps(5000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(ts, ts.round()) and ts.min() == 0 and ts.max() == 999


@pytest.mark.parametrize("sampler", ["unipc", "euler"])
def test_flow_samplers_reach_the_data_point_with_an_oracle(sampler):
    """For data concentrated at x0 the exact velocity is (x_t - x0) / σ; integrating it must land on x0."""
    obj = FlowMatchingObjective(shift=3.0)
    sched = obj.make_scheduler(sampler)
    x0 = torch.randn(2, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))

    def oracle(x, t):
        # UniPC hands the model integer timesteps (999 for σ = 1), as in the Wan pipeline; its σ is exact
        sigma = sched.sigmas[(sched.timesteps == t).nonzero()[0, 0]]
        torch.testing.assert_close(t / 1000.0, sigma, atol=1.001e-3, rtol=0)
        return (x - x0) / sigma

    out = sample_latents(oracle, sched, noise, num_inference_steps=8, progress=False)
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)


def test_ddim_sampler_follows_the_oracle_trajectory():
    """With ε̂ = (x_t - sqrt(ᾱ) x0) / sqrt(1 - ᾱ) DDIM stays on x_t = sqrt(ᾱ) x0 + sqrt(1 - ᾱ) n."""
    obj = EpsilonObjective()
    sched = obj.make_scheduler()
    x0 = torch.randn(2, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    alpha_bar = sched.alphas_cumprod

    def oracle(x, t):
        a = alpha_bar[int(t)]
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    out = sample_latents(oracle, sched, noise, num_inference_steps=10, progress=False)
    a_end = sched.final_alpha_cumprod
    # the first step starts from pure noise, not from x_999, so n is the oracle's ε at t = 999
    a_start = alpha_bar[int(sched.timesteps[0])]
    n = (noise - a_start.sqrt() * x0) / (1 - a_start).sqrt()
    torch.testing.assert_close(out, a_end.sqrt() * x0 + (1 - a_end).sqrt() * n, rtol=1e-4, atol=1e-4)


def test_sampler_must_match_objective():
    with pytest.raises(ValueError, match="flow predictions"):
        make_objective("flow").make_scheduler("ddim")
    with pytest.raises(ValueError, match="epsilon objective"):
        make_objective("epsilon").make_scheduler("unipc")
    with pytest.raises(ValueError, match="'flow' or 'epsilon'"):
        make_objective("v")
