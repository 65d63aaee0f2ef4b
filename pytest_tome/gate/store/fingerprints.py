"""Fingerprints: what a measurement depends on (model, steps, dtype, ToMe arguments, timing
threads and clock, package versions), as plain JSON, and how two of them differ. A baseline is
compared only with a run of the same fingerprint."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Any

from pytest_tome.gate.results import float_to_json

VERSIONED_PACKAGES = ("torch", "diffusers", "tomesd")
# The settings a measurement depends on, each named as TomeSettings, RunPlan and its option
# (--tome-<name>) name it. The fingerprint and the printed save command (store.commands) are
# both built from these tuples, so a field added here is in both.
MEASURED_WITH = ("dtype", "steps", "seed", "images")
TIMED_WITH = ("threads", "clock")  # on the CPU only (RunPlan.timing); a GPU times wall, synced
# RunPlan fields that are no part of the fingerprint, and why: the entry's key (ratio), the
# fingerprint's `model` and `tome.method`, the file's device folder, and how many samples
# are drawn (more rounds pin the same quantity closer; they do not change it).
NOT_FINGERPRINTED = ("model", "ratio", "method", "device", "rounds", "warmup", "max_rounds")


def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def fingerprint(**values: Any) -> dict[str, Any]:
    """What a measurement depends on, as plain JSON values (tuples become lists, other objects
    such as torch.dtype their str). Versions of torch, diffusers and tomesd are added unless
    `versions` is given."""
    values.setdefault("versions", package_versions())
    return {key: _plain(value) for key, value in sorted(values.items())}


def plan_fingerprint(
    plan: Any, torch_threads: int, *, resolution: list[int] | None, tome: dict[str, Any]
) -> dict[str, Any]:
    """The fingerprint of a measurement run as `plan` (a RunPlan) says: the model, the
    MEASURED_WITH settings, on the CPU the TIMED_WITH ones (`torch_threads`: torch's own count,
    for threads=auto), the image `resolution`, the ToMe arguments and the versions."""
    values = {name: getattr(plan, name) for name in MEASURED_WITH}
    timing = plan.timing(torch_threads)
    if not set(timing) <= set(TIMED_WITH):
        raise ValueError(f"timing fields {sorted(timing)} are not all in TIMED_WITH {TIMED_WITH}")
    return fingerprint(model=plan.model, resolution=resolution, tome=tome, **values, **timing)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return float_to_json(value) if isinstance(value, float) else value
    return str(value)


def compare_fingerprints(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per key whose value differs, dotted for nested keys, sorted."""
    old, new = _flatten(_plain(baseline)), _flatten(_plain(current))
    missing = "(absent)"
    return [
        f"{key}: baseline {old.get(key, missing)!r}, now {new.get(key, missing)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    ]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
