"""The shipped face weights: written by training, checked and loaded by the real loading path.

Each model is a `save_pretrained` folder under `weights/`, loaded with
`DiffusionPipeline.from_pretrained` like any local checkpoint. `MANIFEST.json` beside them
holds each file's SHA-256, so a missing or damaged file is named before diffusers reads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from pytest_tome.atomic import write_atomic
from pytest_tome.models.spec import ModelLoadError

WEIGHTS = Path(__file__).parent / "weights"
MANIFEST = "MANIFEST.json"
FACE_MODELS = ("faces-ddpm", "faces-ldm")
REBUILD = "rebuild them with `make train-faces` (scripts/train_faces.py, about 30 minutes)"


class FaceWeightsError(ModelLoadError):
    """A shipped face model's file is missing or damaged; the message names it and the fix."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_face_model(pipe: Any, name: str, info: dict[str, Any], root: Path = WEIGHTS) -> Path:
    """Save `pipe` as safetensors under root/name and record its files' hashes in the manifest."""
    folder, staging = root / name, root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {
        "model": name,
        "files": {p.relative_to(staging).as_posix(): _sha256(p) for p in files},
        **info,
    }
    write_atomic(staging / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    shutil.rmtree(folder, ignore_errors=True)  # a crash before here leaves the old weights whole
    staging.rename(folder)
    return folder


def check_face_model(name: str, root: Path | None = None) -> Path:
    """The folder of shipped model `name`, after checking every file against the manifest."""
    folder = (root or WEIGHTS) / name
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FaceWeightsError(f"face model {name!r}: {manifest_path} is missing; {REBUILD}")
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FaceWeightsError(
            f"face model {name!r}: {manifest_path} is unreadable ({exc}); {REBUILD}"
        ) from None
    for relative, digest in files.items():
        path = folder / relative
        if not path.is_file():
            raise FaceWeightsError(f"face model {name!r}: weight file {path} is missing; {REBUILD}")
        if _sha256(path) != digest:
            raise FaceWeightsError(
                f"face model {name!r}: weight file {path} is damaged (its SHA-256 differs from "
                f"{manifest_path}); {REBUILD}"
            )
    return folder


def load_face_model(name: str, root: Path | None = None) -> Any:
    """Load shipped model `name` offline through `DiffusionPipeline.from_pretrained`."""
    from diffusers import DiffusionPipeline

    folder = check_face_model(name, root)
    return DiffusionPipeline.from_pretrained(folder, local_files_only=True)
