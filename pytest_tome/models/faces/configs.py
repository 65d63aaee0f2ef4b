"""The face models' architectures: the real CelebA-HQ models' shapes, scaled down.

google/ddpm-celebahq-256 is a pixel UNet2DModel with self-attention only at 16x16 (256 tokens);
`faces-ddpm` keeps that: 32x32 pixels, attention at the middle level's 16x16. CompVis's
ldm-celebahq-256 runs a UNet2DModel on a VQ latent and attends at 32x32 of it (1024 tokens);
`faces-ldm` encodes 64x64 faces to a 32x32x4 latent (a KL autoencoder: its latents are
near-Gaussian, where a briefly trained VQ encoder's are heavy-tailed) and attends at 32x32
(1024 tokens, on the way down) and at 16x16.
"""

from __future__ import annotations

from typing import Any

DDPM_SIZE = 32
LDM_IMAGE_SIZE = 64
LDM_LATENT_SIZE = 32
LDM_LATENT_CHANNELS = 4
TRAIN_TIMESTEPS = 1000


def ddpm_unet() -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=DDPM_SIZE,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=8,
    )


def ldm_autoencoder() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=LDM_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=LDM_IMAGE_SIZE,
        mid_block_add_attention=False,  # the 64x64 faces need no attention to be encoded
    )


def ldm_unet() -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=LDM_LATENT_SIZE,
        in_channels=LDM_LATENT_CHANNELS,
        out_channels=LDM_LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),  # deepest first
        attention_head_dim=32,
        norm_num_groups=8,
    )


def scheduler(latent: bool = False) -> Any:
    """A few-step DDIM sampler over a cosine schedule: the gate runs 4 steps per image.

    The steps trail from the last training step, pure noise: leading steps (from 750) start
    pure noise at a step that expects a visible image, and leave faint, washed-out samples.
    At that last step the signal level is near zero, so predicting the noise makes the
    clean-image estimate divide by it: in pixel space it is clipped to the data's range. A
    latent has no such range, so `faces-ldm` predicts the velocity instead (v-prediction,
    Salimans & Ho 2022), whose clean-image estimate stays bounded at every step.
    """
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=not latent,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction" if latent else "epsilon",
    )
