"""How a patched attention layer reduces its tokens: the one place that knows the method.

Every family's processor asks the patch's `Reducer`, not the algorithms directly:
- ToMe (`method="tome"`): `removed(h, w)` tokens are merged by `plan(metric, h, w)`, a
  `TokenMerge` the processor merges before and unmerges after attention. With
  `share_matching=True` the first layer at a resolution in a forward computes the matching and
  every later layer at that resolution reuses it (one matching per resolution per forward, as
  in ToMe's "merge once per level" variants) instead of matching its own input.
- ToDo (`method="todo"`): `keys_values(x, h, w)` is `x` downsampled k x k; queries stay whole.

`start_forward()` (a forward pre-hook of the patched model) forgets the shared matchings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_tome.engine.args import METHOD_TODO, TomeArgs
from pytest_tome.engine.matching import DestinationRng, TokenMerge, bipartite_soft_matching_2d
from pytest_tome.engine.todo import downsample, downsampled_tokens, todo_factor

Matcher = Callable[..., Any]  # bipartite_soft_matching_2d's signature, returns a TokenMerge


class Reducer:
    """The token reduction of one patch: ToMe matchings (shared if asked) or ToDo sampling."""

    def __init__(
        self,
        args: TomeArgs,
        rng: DestinationRng | None = None,
        match: Matcher = bipartite_soft_matching_2d,
    ) -> None:
        self.args = args
        self.rng = rng if rng is not None else DestinationRng(args.seed)
        self.match = match
        self.todo = args.method == METHOD_TODO
        self.factor = todo_factor(args.ratio) if self.todo else 1
        self._plans: dict[tuple[Any, ...], TokenMerge] = {}

    def start_forward(self, *_: Any) -> None:
        """A new model forward: matchings shared within the last one are computed anew."""
        self._plans.clear()

    @property
    def cell(self) -> tuple[int, int]:
        """The (h, w) cell one kept token stands for; smaller grids are passed on unreduced."""
        return (self.factor, self.factor) if self.todo else (self.args.sy, self.args.sx)

    def removed(self, h: int, w: int) -> int:
        """Tokens an h x w grid loses: merged (ToMe) or left out of the keys/values (ToDo)."""
        if self.todo:
            return h * w - downsampled_tokens(h, w, self.factor)
        if h < self.args.sy or w < self.args.sx:
            return 0
        return int(h * w * self.args.ratio)

    def plan(
        self,
        metric: torch.Tensor,
        h: int,
        w: int,
        *,
        channels_first: bool = False,
        sample: int | None = None,
    ) -> TokenMerge:
        """The ToMe matching for (B, h*w, C) `metric` (or (B, C, h*w) if `channels_first`):
        its own, or the one shared at h x w. `sample`: which sample of a larger batch a batch
        of one is (Flux merges sample by sample); each sample shares only its own matching."""
        s = self.args
        batch = metric.shape[0]
        key = (h, w, batch, sample, metric.device)
        if s.share_matching and key in self._plans:
            return self._plans[key]
        # Odd batches cannot pair prompted with unprompted images: fixed destinations (tomesd).
        use_rand = s.use_rand and batch % 2 == 0
        generator = self.rng.get(metric.device) if use_rand else None
        plan = self.match(
            metric,
            h,
            w,
            s.sx,
            s.sy,
            self.removed(h, w),
            use_rand=use_rand,
            generator=generator,
            channels_first=channels_first,
        )
        if s.share_matching:
            self._plans[key] = plan
        return plan

    def keys_values(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """ToDo: the (B, h*w, C) tokens downsampled to the keys' and values' grid."""
        return downsample(x, h, w, self.factor)
