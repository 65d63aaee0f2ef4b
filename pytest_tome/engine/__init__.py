"""The merge engine: Token Merging for diffusers models, usable without pytest.

`apply_tome` / `remove_tome` / `tome_applied` patch a pipeline's denoiser; one module per
architecture family in `families/` finds and patches its layers; `matching` holds the
bipartite soft matching itself. Nothing here imports pytest.
"""

from pytest_tome.engine.args import TomeArgs, TomeNotApplicable, max_ratio
from pytest_tome.engine.layers import BACKEND_OURS, BACKEND_TOMESD, PatchedLayer, TomeWarning
from pytest_tome.engine.patch import (
    TomePatch,
    apply_tome,
    model_of,
    patch_of,
    remove_tome,
    tome_applied,
)

__all__ = [
    "BACKEND_OURS",
    "BACKEND_TOMESD",
    "PatchedLayer",
    "TomeArgs",
    "TomeNotApplicable",
    "TomePatch",
    "TomeWarning",
    "apply_tome",
    "max_ratio",
    "model_of",
    "patch_of",
    "remove_tome",
    "tome_applied",
]
