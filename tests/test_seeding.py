"""Model builders draw seeded weights without touching the caller's random state: the CPU
generator comes back as it was (torch.random.fork_rng), and no CUDA generator is seeded."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.models import presets
from pytest_tome.models.embedded import EMBEDDED, EMBEDDED_SEED, build_embedded
from pytest_tome.models.seeding import seeded

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def cuda_seeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Seeds given to any CUDA generator (torch.manual_seed seeds them all, even on a CPU-only
    machine, where the call is queued for CUDA's lazy init)."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", calls.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", calls.append)
    return calls


def test_seeded_restores_the_cpu_state_and_seeds_no_cuda_generator(cuda_seeds) -> None:
    torch.manual_seed(1234)
    cuda_seeds.clear()
    before = torch.random.get_rng_state()
    with seeded(0):
        inside = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(0)
    assert torch.equal(inside, torch.rand(3))  # the CPU generator was seeded with 0 inside
    assert cuda_seeds == [0]  # only the line above, not the builder


def test_building_a_model_leaves_the_global_random_state_unchanged(cuda_seeds) -> None:
    torch.manual_seed(99)
    cuda_seeds.clear()
    before = torch.random.get_rng_state()
    build_embedded("tiny-ddpm")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert cuda_seeds == [], "a builder seeded the CUDA generators and left them seeded"


def test_presets_use_the_shared_seeded_context(cuda_seeds) -> None:
    before = torch.random.get_rng_state()
    drawn = presets._seeded(lambda: torch.rand(2))
    assert torch.equal(torch.random.get_rng_state(), before) and cuda_seeds == []
    with seeded(presets.PRESET_SEED):
        assert torch.equal(drawn, torch.rand(2))


def test_weights_are_the_bits_the_baselines_were_measured_with() -> None:
    """Seeding only the CPU generator draws the same weights as torch.manual_seed did."""
    new = build_embedded("tiny-ddpm").unet.state_dict()
    state = torch.random.get_rng_state()
    torch.manual_seed(EMBEDDED_SEED)
    old = EMBEDDED["tiny-ddpm"]().unet.state_dict()
    torch.random.set_rng_state(state)
    assert all(torch.equal(new[k], old[k]) for k in new)
