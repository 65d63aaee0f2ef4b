"""`--tome-history=FILE`: one JSON line per gate run, appended, for the trend across commits.

A line holds the commit (from git, when the rootdir is in a repository), the date, the run's
fingerprint (what its figures depend on) and, per model, method and ratio, the speedup, time,
memory, PSNR and SSIM. Only the controller writes (under pytest-xdist workers send their
results to it), under a lock file, the whole file replaced atomically: a reader sees the file
before or after a run's line, never half a line. Reading skips a line that is not a record and
says which; nothing a file holds can stop a run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_tome import atomic
from pytest_tome.gate.results import NOT_MERGEABLE, RatioResult, float_from_json, float_to_json

HISTORY_FORMAT = "pytest-tome history"
HISTORY_VERSION = 1
# The settings a run's figures depend on (with the package versions): its fingerprint.
FINGERPRINT_SETTINGS = ("device", "dtype", "steps", "seed", "images", "threads", "clock")
GIT_TIMEOUT_S = 10


class HistoryError(Exception):
    """The history file cannot be written; the message names it and why."""


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The checked-out commit of the repository holding `folder`: sha, subject, commit date,
    and whether tracked files differ from it; None outside a repository or without git."""
    try:
        log = subprocess.run(
            ["git", "-C", str(folder), "log", "-1", "--format=%H%x00%s%x00%cI"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = log.stdout.strip().split("\x00")
    if log.returncode != 0 or len(parts) != 3:
        return None
    sha, subject, date = parts
    return {"sha": sha, "subject": subject, "date": date, "dirty": bool(status.stdout.strip())}


def run_fingerprint(settings: dict[str, Any], versions: dict[str, str]) -> dict[str, Any]:
    """What the run's figures depend on, and a short id of it to compare runs by."""
    values = {key: settings.get(key) for key in FINGERPRINT_SETTINGS}
    values["versions"] = {k: v for k, v in sorted(versions.items()) if k != "pytest-tome"}
    text = json.dumps(values, sort_keys=True, default=str)
    return {**values, "id": hashlib.sha256(text.encode()).hexdigest()[:12]}


def _entry(result: RatioResult) -> dict[str, Any]:
    measured = result.verdict != NOT_MERGEABLE
    return {
        "model": result.model,
        "method": result.method,
        "ratio": result.ratio,
        "device": result.device,
        "verdict": result.verdict,
        "speedup": result.speedup,
        "speedup_ci": list(result.speedup_ci) if result.speedup_ci else None,
        "time_per_image": result.time_per_image if measured else None,
        "time_per_image_base": result.time_per_image_base if measured else None,
        "memory": result.memory_tome,
        "memory_base": result.memory_base,
        "memory_method": result.memory_method,
        "psnr": float_to_json(result.psnr),
        "ssim": result.ssim,
        "rounds": len(result.time_tome),
    }


def history_record(
    results: Sequence[RatioResult],
    settings: dict[str, Any],
    versions: dict[str, str],
    *,
    commit: dict[str, Any] | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One run's line: commit, date, fingerprint and every result's figures."""
    now = now or datetime.now(timezone.utc)
    return {
        "format": HISTORY_FORMAT,
        "version": HISTORY_VERSION,
        "commit": commit,
        "date": now.isoformat(timespec="seconds"),
        "fingerprint": run_fingerprint(settings, versions),
        "saved_baselines": bool(settings.get("save_baselines")),
        "results": [_entry(result) for result in results],
    }


def append_record(path: Path, record: dict[str, Any]) -> Path:
    """Add one line to the file, atomically, under a lock (`FILE.lock`) against other runs.

    Earlier lines are kept byte for byte, unreadable ones too (they are reported on reading).
    """
    from filelock import FileLock

    path = Path(path)
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock")):
            before = path.read_bytes() if path.exists() else b""
            if before and not before.endswith(b"\n"):  # a line cut short by a crash stays apart
                before += b"\n"
            atomic.write_atomic(path, before + line.encode())
    except OSError as exc:
        raise HistoryError(f"cannot append to {str(path)!r}: {exc.strerror or exc}") from None
    return path


@dataclass
class History:
    """The readable records of a history file, oldest first, and what was skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_history(path: Path) -> History:
    """Every record of the file; a line that is not one is skipped and named in `problems`."""
    history = History()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return history
    except OSError as exc:
        history.problems.append(f"{path}: cannot be read ({exc.strerror or exc}): no trend")
        return history
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        why = _problem(line)
        if why:
            history.problems.append(f"{path}:{number}: {why}: line skipped")
        else:
            history.records.append(json.loads(line))
    return history


def _problem(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
        return f"not a {HISTORY_FORMAT} record"
    results = data.get("results")
    if not isinstance(results, list) or not all(_is_entry(e) for e in results):
        return "its results are not a list of model, method and ratio entries"
    if not isinstance(data.get("fingerprint"), dict):
        return "it has no fingerprint"
    return None


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        return False
    ratio = entry.get("ratio")
    numbers = [entry.get(k) for k in ("speedup", "ssim")]
    return (
        isinstance(ratio, (int, float))
        and isinstance(entry.get("method", "tome"), str)
        and all(v is None or isinstance(v, (int, float)) for v in numbers)
        and _psnr_ok(entry.get("psnr"))
    )


def _psnr_ok(value: Any) -> bool:
    try:
        return value is None or isinstance(float_from_json(value), (int, float))
    except ValueError:
        return False
