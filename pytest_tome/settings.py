"""The resolved settings of a run: one frozen object built from plain values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_tome.gate.verdicts import Tolerances
from pytest_tome.models.spec import ModelLoadError, ModelSpec, resolve_model


class SettingsError(ValueError):
    """A combination of settings that cannot run here; the message says why and what works."""


@dataclass(frozen=True)
class TomeSettings:
    """What every fixture and the gate read; built once per session (per worker under xdist)."""

    ratios: tuple[float, ...] = (0.5,)
    models: tuple[ModelSpec, ...] = ()
    device: str = "cpu"  # as asked ("auto", "cuda") until resolved: "cpu", "cuda:0", "mps"
    dtype: str = "float32"
    steps: int = 4
    seed: int = 0
    images: int = 1
    rounds: int = 6
    warmup: int = 1
    baselines: Path = Path("baselines")
    save_baselines: bool = False
    report: Path | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)

    def model(self, name: str) -> ModelSpec:
        return next(spec for spec in self.models if spec.name == name)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly view for the header, report.json and fingerprints."""
        return {
            "ratios": list(self.ratios),
            "models": [spec.name for spec in self.models],
            "device": self.device,
            "dtype": self.dtype,
            "steps": self.steps,
            "seed": self.seed,
            "images": self.images,
            "rounds": self.rounds,
            "warmup": self.warmup,
            "baselines": str(self.baselines),
            "tolerances": asdict(self.tolerances),
        }


def build_settings(
    values: dict[str, Any],
    *,
    rootdir: Path,
    invocation_dir: Path | None = None,
    presets: tuple[str, ...] = (),
) -> TomeSettings:
    """Turn parsed option values into settings; raises SettingsError for what cannot run here."""
    models = []
    for entry in values["tome_models"]:
        try:
            models.append(resolve_model(entry, presets))
        except ModelLoadError as exc:
            raise SettingsError(f"--tome-models: {exc}") from None
    # The device stays as asked ("auto", "cuda", ...): checking it needs torch, which a suite
    # that never uses a tome fixture must not pay for. `resolve_settings` does it at first use.
    device = values["tome_device"]
    dtype = values["tome_dtype"]
    _check_dtype(device, dtype)
    # Paths given by the user are relative to where pytest was started, as --junitxml is;
    # the default baselines folder lives at the rootdir.
    here = invocation_dir or rootdir
    baselines = (
        here / values["tome_baselines"] if values["tome_baselines"] else rootdir / "baselines"
    )
    report = here / values["tome_report"] if values["tome_report"] else None
    return TomeSettings(
        ratios=values["tome_ratios"],
        models=tuple(models),
        device=device,
        dtype=dtype,
        steps=values["tome_steps"],
        seed=values["tome_seed"],
        images=values["tome_images"],
        rounds=values["tome_rounds"],
        warmup=values["tome_warmup"],
        baselines=baselines,
        save_baselines=bool(values["tome_save_baselines"]),
        report=report,
        tolerances=Tolerances(
            speed=values["tome_tol_speed"],
            memory=values["tome_tol_memory"],
            psnr=values["tome_tol_psnr"],
            ssim=values["tome_tol_ssim"],
        ),
    )


def resolve_settings(settings: TomeSettings, worker_index: int | None = None) -> TomeSettings:
    """The settings with their device resolved (imports torch); raises SettingsError."""
    device = resolve_device(settings.device, worker_index)
    _check_dtype(device, settings.dtype)
    return replace(settings, device=device)


def _check_dtype(device: str, dtype: str) -> None:
    if dtype == "float16" and device == "cpu":
        raise SettingsError(
            "--tome-dtype=float16 is not supported on the CPU (many kernels are missing or "
            "emulated); use float32 or bfloat16 there, or --tome-device=cuda"
        )


def resolve_device(requested: str, worker_index: int | None = None) -> str:
    """`auto` -> CUDA when present, else CPU; check that the device asked for exists.

    Under pytest-xdist with plain `cuda`, worker N takes GPU N modulo the GPU count.
    """
    if requested == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "auto":
        requested = "cuda" if has_cuda else "cpu"
        if requested == "cpu":
            return "cpu"
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise SettingsError("--tome-device=mps: MPS is not available here; use cpu or auto")
        return "mps"
    if not has_cuda:
        raise SettingsError(
            f"--tome-device={requested}: CUDA is not available here "
            f"(torch {torch.__version__}); use cpu or auto"
        )
    count = torch.cuda.device_count()
    if requested == "cuda":
        return f"cuda:{(worker_index or 0) % count}"
    index = int(requested.split(":")[1])
    if index >= count:
        raise SettingsError(
            f"--tome-device={requested}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})"
        )
    return requested
