"""Training the face models: seeded, on one CPU thread per model, in minutes.

One thread per model makes a retrain with the same seed repeat the same float operations in the
same order, so it gives the same weights on the same torch build and CPU kind; the two models
train side by side (`scripts/train_faces.py`), one per core.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_tome.models.faces import configs
from pytest_tome.models.faces.data import face_images

KL_WEIGHT = 1e-6  # as Stable Diffusion's autoencoder: latents that keep the detail, kept in scale


@dataclass(frozen=True)
class Schedule:
    """How long and how fast one network trains."""

    steps: int
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 50
    ema: float = 0.995  # the shipped weights are the EMA's: smoother samples after a short run


@dataclass
class Trained:
    """A trained pipeline, its per-step losses, and the seconds the training took."""

    pipe: Any
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def diffusion_loss(
    unet: torch.nn.Module, x0: torch.Tensor, scheduler: Any, generator: torch.Generator
) -> torch.Tensor:
    """The DDPM objective at a uniformly drawn timestep: predict the noise added to `x0`, or
    the velocity where the scheduler asks for v-prediction."""
    noise = torch.randn(x0.shape, generator=generator)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
    noisy = scheduler.add_noise(x0, noise, steps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, noise, steps)
    else:
        target = noise
    return torch.nn.functional.mse_loss(unet(noisy, steps).sample, target)


def autoencoder_loss(
    autoencoder: torch.nn.Module, x: torch.Tensor, kl_weight: float
) -> torch.Tensor:
    """Reconstruction from a sampled latent, plus a small KL pull toward a unit Gaussian."""
    posterior = autoencoder.encode(x).latent_dist
    reconstruction = autoencoder.decode(posterior.sample()).sample
    return torch.nn.functional.mse_loss(reconstruction, x) + kl_weight * posterior.kl().mean()


def fit(
    model: torch.nn.Module,
    data: torch.Tensor,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
    schedule: Schedule,
    generator: torch.Generator,
) -> tuple[torch.nn.Module, list[float]]:
    """Train `model` on random batches of `data`; return its EMA copy and the loss per step."""
    model.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=0.0)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < schedule.warmup:
            return (step + 1) / schedule.warmup
        progress = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses = []
    for _ in range(schedule.steps):
        batch = data[torch.randint(0, len(data), (schedule.batch,), generator=generator)]
        loss = loss_fn(model, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        with torch.no_grad():
            for kept, new in zip(ema.parameters(), model.parameters(), strict=True):
                kept.lerp_(new, 1 - schedule.ema)
        losses.append(loss.item())
    return ema, losses


def train_ddpm(schedule: Schedule, seed: int = 0) -> Trained:
    """`faces-ddpm`: a pixel UNet on the 32x32 faces."""
    from diffusers import DDPMPipeline

    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    scheduler = configs.scheduler()
    data = face_images(configs.DDPM_SIZE)

    def loss(unet: torch.nn.Module, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return diffusion_loss(unet, x0, scheduler, gen)

    unet, losses = fit(configs.ddpm_unet(), data, loss, schedule, generator)
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    return Trained(pipe, {"unet": losses}, time.perf_counter() - start)


def train_ldm(ae_schedule: Schedule, unet_schedule: Schedule, seed: int = 0) -> Trained:
    """`faces-ldm`: a KL autoencoder on the 64x64 faces, then a UNet on its 32x32 latents."""
    from diffusers import LDMPipeline

    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images = face_images(configs.LDM_IMAGE_SIZE)

    def ae_objective(ae: torch.nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return autoencoder_loss(ae, x, KL_WEIGHT)

    autoencoder, ae_losses = fit(
        configs.ldm_autoencoder(), images, ae_objective, ae_schedule, generator
    )
    with torch.no_grad():
        latents = autoencoder.encode(images).latent_dist.mean
    # LDMPipeline divides by scaling_factor before decoding: unit-variance latents for the UNet.
    scale = float(1 / latents.std())
    autoencoder.register_to_config(scaling_factor=scale)
    scheduler = configs.scheduler(latent=True)

    def loss(unet: torch.nn.Module, z0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return diffusion_loss(unet, z0, scheduler, gen)

    unet, unet_losses = fit(configs.ldm_unet(), latents * scale, loss, unet_schedule, generator)
    # LDMPipeline names its autoencoder `vqvae`; it only calls decode(), which both kinds have.
    pipe = LDMPipeline(vqvae=autoencoder, unet=unet, scheduler=scheduler)
    return Trained(
        pipe, {"autoencoder": ae_losses, "unet": unet_losses}, time.perf_counter() - start
    )
