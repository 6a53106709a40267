"""Noise schedules and prediction targets, with diffusers' schedulers for sampling.

Ours only: the per-modality time convention. Every modality carries a time t in [0, 1] that the network
sees; t = 0 exactly is a clean condition. For the variance-preserving family (epsilon / v prediction),
discrete training step k in {0..T-1} is seen as t = (k + 1) / T and its noise level is diffusers'
`alphas_cumprod[k]`. For flow matching, t = sigma and x_t = (1 - sigma) x0 + sigma * noise.

`snr_shift` s divides the signal-to-noise ratio of every step by s^2 (Hoogeboom et al., "simple diffusion";
the same idea as SD3's time shift): a token of a 4 x 4 patch of 12 bands averages 192 noisy values, so at the
cosine schedule's t = 0.9 its mean is still clearly visible and the model would rarely train where the data
is truly unknown, which is where sampling starts. The samplers get the shifted schedule as `trained_betas`.

`p_max_noise` trains a share of targets at t = 1 exactly: there the model's x0 estimate is the conditional
mean given the conditions alone (the regression answer), which is the first step of every sampler; with
uniform times that case gets 1/T of the training.

`sample` is x0-prediction: the network outputs the clean latent, and the loss is taken in v space
(||v(x0_hat) - v||^2 = ||x0_hat - x0||^2 / b^2, with b clamped at `min_noise`). In pixel space with large patches
(a 4 x 4 patch of 12 bands is 192 values, close to the transformer's width) predicting the clean signal,
which lies on a low-dimensional manifold, is much easier than predicting noise or v, which do not.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler)

from ..errors import ConfigError

PREDICTIONS = ("epsilon", "v_prediction", "sample", "flow")
SAMPLERS = {"ddpm", "ddim", "dpm++", "euler"}


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


@dataclass
class Diffusion:
    prediction: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    flow_time: str = "logit_normal"  # time sampling for flow matching: uniform | logit_normal
    min_noise: float = 0.05  # x0-prediction: the v-space loss weight 1 / b^2 is capped at 1 / min_noise^2
    snr_shift: float = 1.0  # divide the schedule's signal-to-noise ratio by snr_shift^2 at every step
    p_max_noise: float = 0.0  # training: this share of target times is exactly t = 1 (pure noise)

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"diffusion.prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.snr_shift <= 0:
            raise ConfigError(f"diffusion.snr_shift must be > 0, got {self.snr_shift}")
        if self.prediction != "flow":
            sched = DDPMScheduler(num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule)
            ab = sched.alphas_cumprod.double()
            if self.snr_shift != 1.0:  # SNR / s^2: ab' = ab / (ab + s^2 (1 - ab))
                ab = ab / (ab + self.snr_shift**2 * (1 - ab))
            self.alphas_cumprod = ab.float()  # (T,)
            # the same schedule for every diffusers sampler, as per-step betas
            prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
            self.betas = (1 - ab / prev).clamp(max=0.999).float()

    @property
    def is_flow(self) -> bool:
        return self.prediction == "flow"

    # ---- training -------------------------------------------------------------------------------------
    def sample_t(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) training times in (0, 1]; a share `p_max_noise` of them exactly 1, where sampling starts."""
        if self.is_flow:
            if self.flow_time == "logit_normal":
                t = torch.sigmoid(torch.randn(n, generator=generator)).clamp(1e-4, 1.0)
            else:
                t = torch.rand(n, generator=generator).clamp(1e-4, 1.0)
        else:
            k = torch.randint(0, self.num_train_timesteps, (n,), generator=generator)
            t = (k + 1).float() / self.num_train_timesteps
        if self.p_max_noise > 0:
            t = torch.where(torch.rand(n, generator=generator) < self.p_max_noise, torch.ones_like(t), t)
        return t

    def _ab(self, t: torch.Tensor) -> torch.Tensor:
        k = (t * self.num_train_timesteps).round().long().clamp(1, self.num_train_timesteps) - 1
        ab = self.alphas_cumprod.to(t.device)[k]
        return torch.where(t > 0, ab, torch.ones_like(ab))

    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) with x_t = a * x0 + b * noise, per sample (t = 0 gives a = 1, b = 0)."""
        if self.is_flow:
            return 1 - t, t
        ab = self._ab(t)
        return ab.sqrt(), (1 - ab).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(t)
        return _bcast(a, x0) * x0 + _bcast(b, x0) * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction == "flow":
            return noise - x0
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "sample":
            return x0
        a, b = self.coefficients(t)
        return _bcast(a, x0) * noise - _bcast(b, x0) * x0

    def predict_x0(self, xt: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean estimate implied by a model output at time t."""
        a, b = self.coefficients(t)
        a, b = _bcast(a, xt), _bcast(b, xt)
        if self.prediction == "flow":
            return xt - b * out
        if self.prediction == "epsilon":
            return (xt - b * out) / a.clamp(min=1e-4)
        if self.prediction == "sample":
            return out
        return a * xt - b * out

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) weight of the per-sample MSE between output and :meth:`target`: 1, except for x0-prediction
        where it turns the x0 error into the v-space error 1 / b^2 (capped)."""
        if self.prediction != "sample":
            return torch.ones_like(t, dtype=torch.float)
        _, b = self.coefficients(t)
        return 1.0 / b.float().clamp(min=self.min_noise) ** 2

    # ---- sampling -------------------------------------------------------------------------------------
    def scheduler(self, sampler: str):
        """A fresh diffusers scheduler for `sampler` that matches this diffusion's training."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; samplers are {', '.join(sorted(SAMPLERS))}")
        T = self.num_train_timesteps
        if self.is_flow:
            if sampler == "euler":
                return FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=1.0)
            if sampler == "dpm++":
                return DPMSolverMultistepScheduler(num_train_timesteps=T, prediction_type="flow_prediction",
                                                   use_flow_sigmas=True, flow_shift=1.0, algorithm_type="dpmsolver++")
            raise ConfigError(f"sampler {sampler!r} needs an epsilon/v model; a flow model samples with euler or dpm++")
        kw = dict(num_train_timesteps=T, trained_betas=self.betas.numpy(), prediction_type=self.prediction)
        if sampler == "ddpm":
            return DDPMScheduler(**kw, clip_sample=False)
        if sampler == "ddim":
            return DDIMScheduler(**kw, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
        if sampler == "dpm++":
            return DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++", timestep_spacing="trailing")
        return EulerDiscreteScheduler(**kw, timestep_spacing="trailing")

    def model_time(self, timestep: torch.Tensor | float, scheduler=None) -> float:
        """The network's time for a scheduler timestep."""
        ts = float(timestep)
        if self.is_flow:
            return ts / self.num_train_timesteps
        return (ts + 1) / self.num_train_timesteps

    def to_dict(self) -> dict:
        return {"prediction": self.prediction, "num_train_timesteps": self.num_train_timesteps,
                "beta_schedule": self.beta_schedule, "flow_time": self.flow_time, "min_noise": self.min_noise,
                "snr_shift": self.snr_shift, "p_max_noise": self.p_max_noise}
