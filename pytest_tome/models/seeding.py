"""One seeded context for every model builder: weights drawn from a seeded CPU generator, and
the caller's random state left exactly as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside, the global CPU generator is seeded with `seed` (builders draw their weights on
    the CPU); after, the CPU state is restored by `torch.random.fork_rng`. Only the CPU
    generator is seeded: `torch.manual_seed` would also seed (and leave seeded) every CUDA
    device, and initialise CUDA's generators where nothing here uses them."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def build_seeded(seed: int, factory: Callable[[], T]) -> T:
    """`factory()` inside `seeded(seed)`."""
    with seeded(seed):
        return factory()


__all__ = ["build_seeded", "seeded"]
