"""The resolved settings of a run: one frozen object built from plain values."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.methods import METHOD_TOME, realises, valid_todo_ratios
from pytest_tome.models.spec import ModelLoadError, ModelSpec, resolve_model

BASELINES_FOLDER = "baselines"  # the default --tome-baselines, at the rootdir


class SettingsError(ValueError):
    """A combination of settings that cannot run here; the message says why and what works."""


@dataclass(frozen=True)
class TomeSettings:
    """What every fixture and the gate read; built once per session (per worker under xdist)."""

    ratios: tuple[float, ...] = (0.5,)
    methods: tuple[str, ...] = (METHOD_TOME,)
    models: tuple[ModelSpec, ...] = ()
    device: str = "cpu"  # as asked ("auto", "cuda") until resolved: "cpu", "cuda:0", "mps"
    dtype: str = "float32"
    steps: int = 4
    seed: int = 0
    images: int = 1
    rounds: int = 6
    warmup: int = 1
    max_rounds: int = 20  # rounds may grow to this while the speedup is too noisy to decide
    threads: int | None = 1  # torch threads while timing on the CPU; None: torch's own count
    inconclusive: str = "fail"  # or "warn"
    clock: str = "auto"  # "wall", "cpu" (thread CPU time), or auto: cpu with 1 CPU thread
    baselines: Path = Path(BASELINES_FOLDER)
    save_baselines: bool = False
    report: Path | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)

    def model(self, name: str) -> ModelSpec:
        return next(spec for spec in self.models if spec.name == name)

    def runs(self) -> list[tuple[str, float]]:
        """The (method, ratio) pairs to test: every ratio for ToMe, those ToDo realises for it."""
        return [(m, r) for m in self.methods for r in self.ratios if realises(m, r)]

    def describe(self) -> dict[str, Any]:
        """JSON-friendly view for the header, report.json and fingerprints."""
        return {
            "ratios": list(self.ratios),
            "methods": list(self.methods),
            "models": [spec.name for spec in self.models],
            "device": self.device,
            "dtype": self.dtype,
            "steps": self.steps,
            "seed": self.seed,
            "images": self.images,
            "rounds": self.rounds,
            "warmup": self.warmup,
            "max_rounds": self.max_rounds,
            "threads": self.threads or "auto",
            "inconclusive": self.inconclusive,
            "clock": self.clock,
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
        here / values["tome_baselines"] if values["tome_baselines"] else rootdir / BASELINES_FOLDER
    )
    check_baselines_folder(baselines, saving=bool(values["tome_save_baselines"]))
    if values["tome_clock"] == "cpu" and values["tome_threads"] != 1:
        threads = values["tome_threads"] or "auto"
        raise SettingsError(
            f"--tome-clock=cpu with --tome-threads={threads}: the CPU clock times the calling "
            "thread only, which misses the work of other threads, so it needs "
            "--tome-threads=1 (or use --tome-clock=wall)"
        )
    if values["tome_rounds"] > values["tome_max_rounds"]:
        raise SettingsError(
            f"--tome-rounds={values['tome_rounds']} is more than "
            f"--tome-max-rounds={values['tome_max_rounds']}; the rounds a ratio starts with "
            "must be at most those it may grow to (raise --tome-max-rounds)"
        )
    report = here / values["tome_report"] if values["tome_report"] else None
    methods = values.get("tome_methods") or (METHOD_TOME,)
    _check_methods(methods, values["tome_ratios"])
    return TomeSettings(
        ratios=values["tome_ratios"],
        methods=methods,
        models=tuple(models),
        device=device,
        dtype=dtype,
        steps=values["tome_steps"],
        seed=values["tome_seed"],
        images=values["tome_images"],
        rounds=values["tome_rounds"],
        warmup=values["tome_warmup"],
        max_rounds=values["tome_max_rounds"],
        threads=values["tome_threads"],
        inconclusive=values["tome_inconclusive"],
        clock=values["tome_clock"],
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


def check_baselines_folder(folder: Path, *, saving: bool) -> None:
    """A baselines path that is a file, or (for a saving run) a folder that cannot be
    written, is a usage error before any test measures anything."""
    if folder.exists() and not folder.is_dir():
        raise SettingsError(f"--tome-baselines: {folder} is a file; expected a folder")
    if not saving:
        return
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SettingsError(f"--tome-baselines: {existing} is a file, so {folder} cannot be made")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(
            f"--tome-baselines: {existing} is read-only; --tome-save-baselines needs to write "
            f"{folder} (pick a writable folder, or run without saving)"
        )


def _check_methods(methods: tuple[str, ...], ratios: tuple[float, ...]) -> None:
    for method in methods:
        if not any(realises(method, r) for r in ratios):
            given = ",".join(f"{r:g}" for r in ratios)
            raise SettingsError(
                f"--tome-methods={method}: none of --tome-ratios={given} is a ratio {method} can "
                f"realise; ToDo removes {valid_todo_ratios()} of the keys/values, "
                "e.g. --tome-ratios=0.5,0.75"
            )


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
