"""The face models this repository trains and ships (pytest_tome/models/faces/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_tome.models.embedded import DEFAULT_MODELS, build_embedded
from pytest_tome.models.faces import configs, train
from pytest_tome.models.faces.data import face_images
from pytest_tome.models.faces.shipped import (
    FACE_MODELS,
    MANIFEST,
    WEIGHTS,
    FaceWeightsError,
    check_face_model,
    load_face_model,
)
from pytest_tome.models.spec import resolve_model


def test_training_data_is_the_100_lfw_faces_and_their_mirrors() -> None:
    faces = face_images(32)
    assert faces.shape == (200, 3, 32, 32)
    assert faces.min() >= -1 and faces.max() <= 1
    assert torch.allclose(faces[100:], faces[:100].flip(-1), atol=1e-6)  # resampled after flipping
    assert torch.equal(faces[:, 0], faces[:, 2])  # gray, replicated to RGB


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    unet = configs.ddpm_unet()
    scheduler = configs.scheduler()
    batch = face_images(configs.DDPM_SIZE)[:8]

    def fixed_noise_loss(model: torch.nn.Module, x0: torch.Tensor, _: torch.Generator):
        # the same noise and timesteps every step, so the loss can only move by learning
        return train.diffusion_loss(model, x0, scheduler, torch.Generator().manual_seed(1))

    schedule = train.Schedule(steps=12, batch=8, lr=2e-3, warmup=1)
    _, losses = train.fit(unet, batch, fixed_noise_loss, schedule, torch.Generator().manual_seed(0))
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


@pytest.mark.parametrize("latent", [False, True], ids=["pixel-epsilon", "latent-velocity"])
def test_the_loss_is_zero_only_for_the_target_its_scheduler_predicts(latent: bool) -> None:
    scheduler = configs.scheduler(latent=latent)
    x0 = face_images(8)[:4]

    class Oracle(torch.nn.Module):  # returns what a perfect model of `kind` would predict
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

        def forward(self, noisy: torch.Tensor, steps: torch.Tensor):
            alpha = scheduler.alphas_cumprod[steps].view(-1, 1, 1, 1)
            noise = (noisy - alpha.sqrt() * x0) / (1 - alpha).sqrt()
            velocity = alpha.sqrt() * noise - (1 - alpha).sqrt() * x0
            return type("Out", (), {"sample": noise if self.kind == "epsilon" else velocity})

    def loss(kind: str) -> float:
        return float(train.diffusion_loss(Oracle(kind), x0, scheduler, torch.Generator()))

    right, wrong = ("v_prediction", "epsilon") if latent else ("epsilon", "v_prediction")
    assert scheduler.config.prediction_type == right
    assert loss(right) < 1e-8 and loss(wrong) > 1e-2


def test_a_retrain_with_the_same_seed_gives_the_same_weights() -> None:
    schedule = train.Schedule(steps=2, batch=4, warmup=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as scripts/train_faces.py trains: one thread, one float order
    try:
        first, second = (train.train_ddpm(schedule, seed=3).pipe for _ in range(2))
        other = train.train_ddpm(schedule, seed=4).pipe
    finally:
        torch.set_num_threads(threads)
    a, b, c = (p.unet.state_dict() for p in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", FACE_MODELS)
def test_shipped_weights_are_small_safetensors_listed_in_the_manifest(name: str) -> None:
    folder = check_face_model(name)
    weights = sorted(folder.rglob("*.safetensors"))
    assert weights and not list(folder.rglob("*.bin"))
    total = sum(p.stat().st_size for m in FACE_MODELS for p in (WEIGHTS / m).rglob("*"))
    assert total <= 16 * 2**20


@pytest.mark.parametrize("name", FACE_MODELS)
def test_shipped_models_are_embedded_trained_and_in_the_main_job(name: str) -> None:
    spec = resolve_model(name)
    assert (spec.kind, spec.weights_are_random, spec.quality_gated) == ("embedded", False, True)
    assert resolve_model("tiny-sd").weights_are_random
    assert name in DEFAULT_MODELS


@pytest.mark.parametrize("name", FACE_MODELS)
def test_shipped_weights_load_offline_and_give_the_same_bits_run_to_run(name: str) -> None:
    def images() -> np.ndarray:
        pipe = build_embedded(name)
        with torch.inference_mode():
            out = pipe(
                batch_size=2,
                num_inference_steps=3,
                generator=torch.Generator().manual_seed(7),
                output_type="np",
            )
        return out.images

    first, second = images(), images()
    assert first.shape[0] == 2 and first.std() > 0.05  # an image, not a flat field
    assert np.array_equal(first, second)


@pytest.fixture
def weights_copy(tmp_path: Path) -> Path:
    shutil.copytree(WEIGHTS / "faces-ddpm", tmp_path / "faces-ddpm")
    return tmp_path


def test_a_missing_weight_file_names_the_file_and_the_rebuild(weights_copy: Path) -> None:
    (weights_copy / "faces-ddpm" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FaceWeightsError, match=r"diffusion_pytorch_model\.safetensors is missing"):
        load_face_model("faces-ddpm", weights_copy)
    with pytest.raises(FaceWeightsError, match="make train-faces"):
        load_face_model("faces-ddpm", weights_copy)


def test_a_corrupt_weight_file_names_the_file_and_the_rebuild(weights_copy: Path) -> None:
    path = weights_copy / "faces-ddpm" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FaceWeightsError, match=r"safetensors is damaged.*make train-faces"):
        load_face_model("faces-ddpm", weights_copy)


def test_a_missing_manifest_is_named(weights_copy: Path) -> None:
    (weights_copy / "faces-ddpm" / MANIFEST).unlink()
    with pytest.raises(FaceWeightsError, match=r"MANIFEST\.json is missing.*make train-faces"):
        check_face_model("faces-ddpm", weights_copy)


def test_the_gate_names_a_broken_face_model_and_the_rebuild(
    pytester: pytest.Pytester, weights_copy: Path
) -> None:
    (weights_copy / "faces-ddpm" / "unet" / "config.json").write_text("{}")
    pytester.makeconftest(
        f"""
        import pytest
        from pytest_tome.models.faces import shipped

        @pytest.fixture(autouse=True, scope="session")  # before the pipeline is loaded
        def broken():
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(shipped, "WEIGHTS", __import__("pathlib").Path({str(weights_copy)!r}))
                yield
        """
    )
    pytester.makepyfile("def test_gate(tome_gate, tome_ratio):\n    tome_gate(tome_ratio)\n")
    result = pytester.runpytest("--tome-models=faces-ddpm", "-p", "no:randomly")
    result.assert_outcomes(errors=1)  # the pipeline fixture fails, before any measuring
    result.stdout.fnmatch_lines(["*config.json is damaged*make train-faces*"])


def test_a_built_wheel_ships_the_face_weights(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(root)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("pytest_tome-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in FACE_MODELS:
        for relative in (MANIFEST, "model_index.json", "unet/diffusion_pytorch_model.safetensors"):
            assert f"pytest_tome/models/faces/weights/{model}/{relative}" in names
    assert (
        "pytest_tome/models/faces/weights/faces-ldm/vqvae/diffusion_pytorch_model.safetensors"
        in names
    )
