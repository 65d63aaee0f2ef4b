"""The run's state: settings and what was measured, kept in `config.stash`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.results import Headroom, RatioResult
from pytest_tome.settings import TomeSettings, resolve_settings


@dataclass
class TomeSession:
    """Collected per process; under xdist the controller merges what workers send."""

    settings: TomeSettings
    results: list[RatioResult] = field(default_factory=list)
    headroom: dict[str, Headroom] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "moved corrupt baseline aside"
    worker_index: int | None = None  # pytest-xdist worker N, or None
    # An xdist worker's share of the cores: with --tome-threads=auto the gate times with that
    # many torch threads (set while timing only; torch's own count is never left changed).
    cpu_threads: int | None = None
    device_resolved: bool = False

    def resolve_device(self) -> TomeSettings:
        """Resolve `settings.device` once (imports torch); raises SettingsError.

        Deferred from start-up so a suite that never uses a tome fixture never imports torch.
        """
        if not self.device_resolved:
            self.settings = resolve_settings(self.settings, self.worker_index)
            self.device_resolved = True
        return self.settings

    def sorted_results(self) -> list[RatioResult]:
        """Results in the order of --tome-models, then ratio (xdist finishes them in any order)."""
        order = {spec.key: i for i, spec in enumerate(self.settings.models)}
        return sorted(self.results, key=lambda r: (order.get(r.model, len(order)), r.ratio))

    def to_workeroutput(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "headroom": [h.to_dict() for h in self.headroom.values()],
            "notes": list(self.notes),
            "device": self.settings.device if self.device_resolved else None,
        }

    def merge_workeroutput(self, data: dict[str, Any]) -> None:
        self.results.extend(RatioResult.from_dict(r) for r in data.get("results", ()))
        if data.get("device"):  # the controller never resolves: it shows what workers used
            seen = set(self.settings.device.split(",")) if self.device_resolved else set()
            device = ",".join(sorted(seen | {data["device"]}))
            self.settings = replace(self.settings, device=device)
            self.device_resolved = True
        for item in data.get("headroom", ()):
            self.headroom.setdefault(item["model"], Headroom.from_dict(item))
        self.notes.extend(data.get("notes", ()))


SESSION_KEY = pytest.StashKey[TomeSession]()
# Each test's tolerances after its `@pytest.mark.tome(...)`, set at collection.
TOLERANCES_KEY = pytest.StashKey[Tolerances]()


def tome_session(config: pytest.Config) -> TomeSession:
    """The run's TomeSession; the plugin puts it in the stash at configure time."""
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise RuntimeError("pytest-tome is not configured in this session") from None
