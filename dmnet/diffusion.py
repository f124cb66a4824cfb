"""DDPM forward process and the noise-prediction loss of DMNet (section III-C, equations 3-6, 17).

Time steps are 1-based as in the paper: alpha_t = 1 - beta_t for t = 1..T, and
abar_t = prod_{i<=t} alpha_i (abar_0 = 1). The schedule is linear in beta from ``beta_start`` to
``beta_end`` over T steps (DMNet/SR3 config: T = 2000, 1e-6 .. 1e-2).

Equation (17) writes sqrt(alpha_t); the noisy input of the denoiser is, by equation (5),
sqrt(abar_t) I_0 + sqrt(1 - abar_t) xi, which is what DDPM trains on and what we use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class NoiseSchedule(nn.Module):
    """Linear-beta DDPM schedule; the tables are buffers (not saved: they follow from the config)."""

    def __init__(self, steps: int, beta_start: float, beta_end: float) -> None:
        super().__init__()
        self.steps = steps
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        abar = torch.cat((torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, dim=0)))
        self.register_buffer("betas", betas.float(), persistent=False)  # betas[t - 1] = beta_t
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)  # [t] = abar_t
        self.register_buffer("sqrt_abar", abar.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_abar", (1 - abar).sqrt().float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Equation (5): I_t = sqrt(1 - abar_t) * eps + sqrt(abar_t) * I_0, t a (B,) long tensor."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return self.sqrt_abar[t].view(shape) * x0 + self.sqrt_one_minus_abar[t].view(shape) * noise

    def sample_timesteps(self, batch: int, device: torch.device,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform t in 1..T, one per sample."""
        return torch.randint(1, self.steps + 1, (batch,), device=device, generator=generator)


_DRAWS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # see seeded_randn
_DRAWS_KEPT = 2
_DRAWS_LOCK = threading.Lock()


def seeded_randn(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``torch.randn(shape, generator=generator)`` on the generator's device (torch's default dtype), where
    a draw from a generator just seeded (``torch.Generator().manual_seed(s)``: DMNet's deterministic
    inference) is remembered: the same shape, seed, dtype and inference mode again give the same values
    without drawing them (a 480 x 640 pair's latent noise, three time steps of 2 channels, takes 6 ms to
    draw on a CPU core), and the generator is left in the state the draw would have left it in. Any
    other generator state draws as usual. The values returned are the caller's to read, not to change
    in place: a remembered draw is shared. The last _DRAWS_KEPT draws are kept."""
    key = (tuple(shape), str(generator.device), generator.initial_seed(), torch.get_default_dtype(),
           torch.is_inference_mode_enabled())  # an inference tensor is handed back in inference mode only
    state = generator.get_state()
    with _DRAWS_LOCK:
        kept = _DRAWS.get(key)
    if kept is not None and torch.equal(kept[0], state):
        generator.set_state(kept[2])
        return kept[1]
    fresh = torch.Generator(device=generator.device).manual_seed(generator.initial_seed()).get_state()
    noise = torch.randn(shape, device=generator.device, generator=generator)
    if torch.equal(fresh, state):
        with _DRAWS_LOCK:
            _DRAWS[key] = (state, noise, generator.get_state())
            while len(_DRAWS) > _DRAWS_KEPT:
                del _DRAWS[next(iter(_DRAWS))]
    return noise


EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def noise_prediction_loss(eps_model: EpsModel, schedule: NoiseSchedule, x0: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """L_dm (equation 17): mean over all elements of (xi - eta(I_t, t))^2 with t ~ U{1..T}.

    Equation (17) writes an L2 norm; we use its mean square, DDPM's "simple" loss and the authors'
    code (l2 summed, divided by B*C*H*W): its gradient does not blow up as the error goes to zero,
    and its scale does not depend on the crop size.
    """
    t = schedule.sample_timesteps(x0.shape[0], x0.device, generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    pred = eps_model(schedule.q_sample(x0, t, noise), t)
    return F.mse_loss(pred.float(), noise.float())
