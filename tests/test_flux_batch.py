"""Flux merges a batch of several images sample by sample: each sample gets its own matching,
also when matchings are shared across layers (the shared plan is keyed by the sample, so
image 1 never reuses image 0's, as `--tome-images=2` used to)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pytest_tome.engine import apply_tome, remove_tome
from pytest_tome.gate.measure.joint_inputs import joint_forward_inputs
from pytest_tome.models.embedded import build_embedded

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def flux() -> Any:
    return build_embedded("tiny-flux")


def sample_inputs(pipe: Any, seed: int) -> dict[str, Any]:
    return joint_forward_inputs(pipe, torch.Generator().manual_seed(seed))


def batched(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    per_sample = ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep")
    return {k: torch.cat([a[k], b[k]]) if k in per_sample else a[k] for k in a}


def forward(pipe: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return pipe.transformer(**kwargs).sample


@pytest.mark.parametrize("share_matching", [True, False])
def test_each_image_of_a_batch_merges_as_it_would_alone(flux: Any, share_matching: bool) -> None:
    first, second = sample_inputs(flux, 0), sample_inputs(flux, 1)
    apply_tome(flux, 0.5, seed=0, share_matching=share_matching)
    try:
        both = forward(flux, batched(first, second))
        alone = [forward(flux, first), forward(flux, second)]
    finally:
        remove_tome(flux)
    unmerged = forward(flux, second)
    assert not torch.allclose(alone[1], unmerged)  # merging changed image 1
    torch.testing.assert_close(both[0:1], alone[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both[1:2], alone[1], rtol=1e-4, atol=1e-5)
