"""Baseline files: `<folder>/<device-key>/<model-key>.json`, one entry per merge ratio.

Saving merges this run's entries into what the file holds, under an exclusive lock on a
sibling lock file (filelock, on every OS), and replaces the file atomically, so parallel
pytest-xdist workers lose nothing and a crash never leaves half a file. A corrupt file is never overwritten silently.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from pytest_tome.atomic import write_atomic
from pytest_tome.gate.results import FAIL, INCONCLUSIVE, RatioResult
from pytest_tome.gate.store.entry_rules import check_fields
from pytest_tome.gate.store.fingerprints import compare_fingerprints

if TYPE_CHECKING:
    import torch

SCHEMA = 1
# RatioResult fields a baseline entry keeps (images, verdicts and reasons belong to one run).
_ENTRY_FIELDS = (
    "ratio", "time_base", "time_tome", "speedup", "speedup_ci", "memory_base", "memory_tome",
    "memory_base_samples", "memory_tome_samples", "memory_method", "psnr", "ssim", "patched_layers",
    "method",
)  # fmt: skip
_REQUIRED = ("ratio", "time_base", "time_tome", "fingerprint")


class BaselineError(Exception):
    """A baseline cannot be used or written; the message says which file and what to do."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class MissingBaseline(BaselineError):
    """No file, or no entry for the ratio: the message names the command that saves one."""


class CorruptBaseline(BaselineError):
    """The file is not a baseline file this version can read."""


class FingerprintMismatch(BaselineError):
    """The baseline was measured with other settings or versions; the message lists them."""

    def __init__(self, message: str, path: Path, baseline: dict, current: dict) -> None:
        super().__init__(message, path)
        self.baseline, self.current = baseline, current


class BaselineFolderError(BaselineError):
    """The baselines folder cannot be created or written."""


def problem_of(error: BaselineError) -> str:
    """What kept a baseline from use, in a word or two (RatioResult.checks' "baseline")."""
    kinds = {
        MissingBaseline: "missing",
        FingerprintMismatch: "fingerprint mismatch",
        CorruptBaseline: "corrupt",
        BaselineFolderError: "unwritable",
    }
    return next((kind for cls, kind in kinds.items() if isinstance(error, cls)), "unusable")


@dataclass(frozen=True)
class BaselineEntry:
    """One ratio's stored measurements and what they were measured with."""

    result: RatioResult
    fingerprint: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveOutcome:
    path: Path
    moved_aside: Path | None = None  # where a corrupt file found on saving was moved

    @property
    def message(self) -> str | None:
        """A line to show the user when something unusual happened, else None."""
        if self.moved_aside is None:
            return None
        return (
            f"baseline file {self.path} was corrupt; "
            f"moved it to {self.moved_aside} and wrote a new one"
        )


def slug(text: str) -> str:
    """Lower case, runs of non-alphanumerics as one '-': "NVIDIA H200" -> "nvidia-h200"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_key(device_type: str, device_name: str | None = None) -> str:
    """The device type, with its name if given: ("cuda", "NVIDIA H200") -> "cuda-nvidia-h200"."""
    return slug(device_type if not device_name else f"{device_type} {device_name}")


def device_key_of(device: torch.device) -> str:
    """The key of a torch.device; CUDA devices are named by their model, which timings depend on."""
    if device.type == "cuda":
        import torch

        return device_key("cuda", torch.cuda.get_device_name(device))
    return device_key(device.type)


def ratio_key(ratio: float, method: str = "tome") -> str:
    """An entry's key: the ratio for ToMe ("0.5"), method and ratio for others ("todo-r0.75")."""
    return f"{float(ratio):g}" if method == "tome" else f"{method}-r{float(ratio):g}"


def _key_order(key: str) -> tuple[str, float]:
    """ToMe's entries first, each method's by ratio."""
    method, _, ratio = key.rpartition("-r")
    return (method, float(ratio))


def baseline_path(folder: Path | str, device: str, model: str) -> Path:
    return Path(folder) / slug(device) / f"{slug(model)}.json"


def read_baselines(path: Path | str) -> dict[str, BaselineEntry]:
    """The entries of one baseline file by ratio key; {} when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BaselineError(
            f"cannot read baseline file {path}: {exc.strerror or exc}", path
        ) from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f'expected a JSON object with "schema": {SCHEMA}')
        return {
            key: _entry(value, data["device"], data["model"])
            for key, value in data["entries"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptBaseline(
            f"baseline file {path} is corrupt ({type(exc).__name__}: {exc}); "
            "fix or delete it, or re-save baselines (the file is then moved aside)",
            path,
        ) from exc


def _entry(data: dict[str, Any], device: str, model: str) -> BaselineEntry:
    if not isinstance(data, dict):
        raise TypeError(f"an entry is {type(data).__name__}, expected an object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise KeyError(f"entry lacks {', '.join(missing)}")
    check_fields(data)
    base, tome = data["time_base"], data["time_tome"]
    if len(base) != len(tome):
        raise ValueError("time_base and time_tome must be equally long lists of numbers")
    known = {key: data[key] for key in _ENTRY_FIELDS if key in data}
    result = RatioResult.from_dict({**known, "model": model, "device": device})
    return BaselineEntry(result, data["fingerprint"])


def load_entry(
    folder: Path | str,
    device: str,
    model: str,
    ratio: float,
    *,
    fingerprint: dict[str, Any],
    save_command: str,
    method: str = "tome",
    quality: bool = False,
    unknown: Iterable[str] = (),
) -> RatioResult:
    """The baseline of `model` at `ratio` on `device`, measured with the same `fingerprint`.

    `quality`: the model's images are scored, so an entry without PSNR or SSIM is corrupt
    (not a quality gate turned off). `unknown`: fingerprint keys not known yet (before
    measuring, the image resolution), left out of the comparison.
    Raises MissingBaseline (naming `save_command`), CorruptBaseline or FingerprintMismatch.
    """
    path = baseline_path(folder, device, model)
    key = ratio_key(ratio, method)
    entry = read_baselines(path).get(key)
    where = f"{model} at ratio {ratio:g}{'' if method == 'tome' else f' ({method})'} on {device}"
    if entry is None:
        raise MissingBaseline(
            f"no baseline for {where} in {path}; create it with: {save_command}", path
        )
    unscored = [name for name in ("psnr", "ssim") if getattr(entry.result, name) is None]
    if quality and unscored:
        raise CorruptBaseline(
            f"baseline file {path} is corrupt: entry {key!r} has {' and '.join(unscored)} "
            f"null, but {model}'s images are scored, so its quality cannot be compared; "
            f"fix the entry, or re-save it with: {save_command}",
            path,
        )
    skip = set(unknown)
    differences = [
        line
        for line in compare_fingerprints(entry.fingerprint, fingerprint)
        if line.split(":", 1)[0].split(".", 1)[0] not in skip
    ]
    if differences:
        raise FingerprintMismatch(
            f"the baseline for {where} in {path} was measured with different settings:\n  "
            + "\n  ".join(differences)
            + f"\nmeasure with the baseline's settings, or re-save baselines with: {save_command}",
            path,
            entry.fingerprint,
            fingerprint,
        )
    return entry.result


def save_entries(
    folder: Path | str, device: str, model: str, entries: Iterable[BaselineEntry]
) -> SaveOutcome:
    """Merge `entries` into the model's baseline file (other ratios are kept) and write it.

    Atomic (temporary file in the same folder, fsync, os.replace) and under an exclusive
    lock, so concurrent writers lose nothing. A corrupt file is moved aside, never lost.
    """
    path = baseline_path(folder, device, model)
    entries = list(entries)
    for entry in entries:
        if entry.result.verdict in (FAIL, INCONCLUSIVE):
            raise ValueError(
                f"{model} at ratio {entry.result.ratio:g}: a measurement whose own verdict is "
                f"{entry.result.verdict!r} is never stored as a baseline"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock")):
            moved = None
            try:
                stored = read_baselines(path)
            except CorruptBaseline:
                moved = _move_aside(path)
                stored = {}
            for entry in entries:
                stored[ratio_key(entry.result.ratio, entry.result.method)] = entry
            write_atomic(path, _dumps(_document(device, model, stored)).encode("utf-8"))
    except OSError as exc:
        lock = path.with_name(path.name + ".lock")
        if lock.is_dir():
            raise BaselineFolderError(
                f"cannot lock {path}: {lock} is a directory, not a lock file; "
                "remove that directory (it holds no baseline) and save again",
                path,
            ) from exc
        raise BaselineFolderError(
            f"cannot write baselines to {path.parent}: {exc.strerror or exc}; "
            "make the folder writable or choose another baselines folder",
            path,
        ) from exc
    return SaveOutcome(path, moved)


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    os.replace(path, target)
    return target


def _document(device: str, model: str, entries: dict[str, BaselineEntry]) -> dict[str, Any]:
    def entry_dict(entry: BaselineEntry) -> dict[str, Any]:
        data = entry.result.to_dict()
        stored = {key: data[key] for key in _ENTRY_FIELDS}
        stored["time_per_image"] = entry.result.time_per_image  # for people reading the file
        return {**stored, "fingerprint": entry.fingerprint}

    return {
        "schema": SCHEMA,
        "device": device,
        "model": model,
        "entries": {key: entry_dict(entries[key]) for key in sorted(entries, key=_key_order)},
    }


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]")


def _dumps(document: dict[str, Any]) -> str:
    """Indented, keys sorted, lists of numbers (raw samples) kept on one line for reading."""
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)

    def one_line(match: re.Match[str]) -> str:
        return "[" + ", ".join(item.strip() for item in match.group(1).split(",")) + "]"

    return _NUMBER_LIST.sub(one_line, text) + "\n"
