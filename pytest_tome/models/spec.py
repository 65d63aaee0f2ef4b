"""What `--tome-models` names, classified without importing anything heavy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pytest_tome.models.embedded import EMBEDDED, TRAINED
from pytest_tome.models.presets import PRESETS


@dataclass(frozen=True)
class ModelSpec:
    """What `--tome-models` named, resolved: an embedded pipeline, a preset, or a checkpoint."""

    name: str  # as the user wrote it; also the test id and the baseline file's key
    kind: str  # "embedded" | "arch" | "folder" | "hub"
    # Seeded random weights (the tiny pipelines, the presets): their images are noise, so the
    # report marks their quality numbers as a network's sensitivity, not image quality.
    weights_are_random: bool = False
    quality_gated: bool = True  # False for the presets: nothing generates their images

    @property
    def key(self) -> str:
        """A file-system-safe key for baseline files and report names."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)
        return safe.strip("-") or "model"


class ModelLoadError(Exception):
    """A model named by the user cannot be resolved or loaded; the message says why."""


def resolve_model(entry: str, presets: tuple[str, ...] = PRESETS) -> ModelSpec:
    """Classify one `--tome-models` entry without loading anything heavy.

    Raises ModelLoadError naming the entry and what would be valid.
    """
    entry = entry.strip()
    if entry in EMBEDDED:
        return ModelSpec(entry, "embedded", weights_are_random=entry not in TRAINED)
    if entry.startswith("arch:"):
        if entry in presets:
            return ModelSpec(entry, "arch", weights_are_random=True, quality_gated=False)
        raise ModelLoadError(
            f"unknown architecture preset {entry!r}; known: {', '.join(presets) or '(none)'}"
        )
    path = Path(entry).expanduser()
    looks_like_path = entry.startswith((".", "/", "~")) or os.sep in entry and path.exists()
    if path.is_dir() or looks_like_path:
        if not path.is_dir():
            raise ModelLoadError(f"model folder {entry!r} does not exist")
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"folder {entry!r} holds no model_index.json, so it is not a diffusers pipeline "
                "(save one with `pipe.save_pretrained(folder)`)"
            )
        return ModelSpec(entry, "folder")
    parts = entry.split("/")
    if len(parts) == 2 and all(parts) and " " not in entry:
        return ModelSpec(entry, "hub")
    raise ModelLoadError(
        f"unknown model {entry!r}: expected an embedded pipeline ({', '.join(EMBEDDED)}), "
        + (f"an architecture preset ({', '.join(presets)}), " if presets else "")
        + "a local folder with model_index.json, or a hub id like 'owner/name'"
    )
