"""Bipartite soft matching for token merging (ToMe), the algorithm of `tomesd`, made cheaper.

The matching is `tomesd.merge.bipartite_soft_matching_random2d`'s: one destination token per
sy x sx cell of the h x w token grid (random or the top-left one), every other token a
source; each source picks its most cosine-similar destination, and the r sources with the
best matches are averaged into their destinations. Given the same input and generator the
result is the same as tomesd's, token for token and in the same order.

What differs is the bookkeeping. tomesd gathers with index tensors expanded over channels,
scatters into a zero buffer to unmerge, and redoes the split on every call. Here the
matching turns into flat row indices once, so `merge` is one row gather plus one `index_add_`
and `unmerge` is a single row gather. On CPU (1024 tokens, 448 channels, r=512) match + merge
+ unmerge take about 40% of tomesd's time; the similarity matmul is most of what is left.

A UNet's feature map is channels-first, (B, C, N): `channels_first=True` matches it where it
lies and `merge_channels_first` sums every token into its merged row in one pass along N, so
no transposed copy into rows is made (the same merges; sums equal to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class TokenMerge:
    """One matching, ready to merge tensors laid out like its metric and unmerge the results.

    `merge` maps (B, tokens_in, C) to (B, tokens_out, C): the unmerged sources first, then
    the destinations, each the mean of itself and the sources merged into it. `unmerge` maps
    (B, tokens_out, C') back to (B, tokens_in, C'), every token taking the row it went into.
    Without index tensors (nothing to merge) both are the identity.

    Determinism: `merge` sums with `index_add_` and `merge_channels_first` with `scatter_add_`,
    which are bit-for-bit reproducible on the CPU but not on CUDA (atomic adds in no fixed
    order; `torch.use_deterministic_algorithms(True)` makes them so, slower). Bit-identity
    with tomesd and run to run is promised on the CPU; on CUDA, equal to float rounding.
    """

    batch: int
    tokens_in: int
    tokens_out: int
    keep: torch.Tensor | None = None  # (B * tokens_out,) rows of the input, in merged order
    add_from: torch.Tensor | None = None  # (B * r,) input rows of the merged sources
    add_to: torch.Tensor | None = None  # (B * r,) merged rows they are added to
    counts: torch.Tensor | None = None  # (B, destinations, 1) tokens averaged in each destination
    inverse: torch.Tensor | None = None  # (B * tokens_in,) merged row of every input token

    @property
    def is_identity(self) -> bool:
        return self.keep is None

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """Average the matched sources into their destinations: (B, N, C) -> (B, N - r, C)."""
        if self.keep is None:
            return x
        rows = x.reshape(self.batch * self.tokens_in, x.shape[-1])
        out = rows.index_select(0, self.keep)
        out.index_add_(0, self.add_to, rows.index_select(0, self.add_from))
        out = out.view(self.batch, self.tokens_out, x.shape[-1])
        destinations = out[:, self.tokens_out - self.counts.shape[1] :]
        destinations.div_(self.counts.to(out.dtype))
        return out

    def merge_channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """`merge` for channels-first (B, C, N) `x`, giving (B, C, N - r).

        A UNet's group-normed feature map is channels-first. Here every token is summed into
        its merged row in one pass along N (no transposed copy, no gathered temporaries), so
        a destination's sum is taken in token order, not `merge`'s: equal to float rounding.
        """
        if self.keep is None:
            return x
        batch, channels = x.shape[:2]
        out = x.new_zeros(batch, channels, self.tokens_out)
        out.scatter_add_(2, self._inverse_per_item.unsqueeze(1).expand(-1, channels, -1), x)
        destinations = out[:, :, self.tokens_out - self.counts.shape[1] :]
        destinations.div_(self.counts.transpose(1, 2).to(out.dtype))
        return out

    @cached_property
    def _inverse_per_item(self) -> torch.Tensor:
        """`inverse` as (B, N) rows within each batch item, made once per matching: a shared
        matching merges several layers."""
        offsets = torch.arange(self.batch, device=self.inverse.device).view(-1, 1)
        return self.inverse.view(self.batch, -1) - offsets * self.tokens_out

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """Give every token the value of the row it went into: (B, N - r, C) -> (B, N, C)."""
        if self.keep is None:
            return x
        rows = x.reshape(self.batch * self.tokens_out, x.shape[-1])
        return rows.index_select(0, self.inverse).view(self.batch, self.tokens_in, x.shape[-1])


def partition(
    h: int,
    w: int,
    sx: int,
    sy: int,
    *,
    use_rand: bool,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the h x w grid into (source, destination) flat token indices.

    One destination per whole sy x sx cell: the cell's top-left token, or one drawn with
    `generator` exactly as tomesd draws it. Rows and columns past the last whole cell are
    all sources. The order within each set is tomesd's (an unstable argsort of a -1/0 grid),
    because it decides the order of the merged tokens and how ties are broken.
    """
    hsy, wsx = h // sy, w // sx
    if use_rand:
        draw_device = generator.device if generator is not None else device
        pick = torch.randint(sy * sx, size=(hsy, wsx, 1), device=draw_device, generator=generator)
        pick = pick.to(device).view(hsy, wsx)
    else:
        pick = torch.zeros(hsy, wsx, dtype=torch.int64, device=device)
    rows = torch.arange(hsy, device=device).view(-1, 1) * sy + torch.div(
        pick, sx, rounding_mode="floor"
    )
    cols = torch.arange(wsx, device=device).view(1, -1) * sx + pick % sx
    grid = torch.zeros(h * w, dtype=torch.int64, device=device)
    grid[(rows * w + cols).flatten()] = -1
    order = grid.view(1, -1, 1).argsort(dim=1).flatten()  # destinations first
    return order[hsy * wsx :], order[: hsy * wsx]


def bipartite_soft_matching_2d(
    metric: torch.Tensor,
    h: int,
    w: int,
    sx: int,
    sy: int,
    r: int,
    *,
    use_rand: bool = True,
    generator: torch.Generator | None = None,
    channels_first: bool = False,
) -> TokenMerge:
    """Match the (B, h*w, C) tokens of `metric` and return how to merge r of them away.

    Same matching as `tomesd.merge.bipartite_soft_matching_random2d(metric, w, h, sx, sy, r,
    no_rand=not use_rand, generator=generator)` (note tomesd takes w before h). r is capped
    at the number of sources; r <= 0, or a grid with no whole sy x sx cell, merges nothing.
    With `use_rand` and no generator the destinations come from the global RNG.

    `channels_first`: `metric` is (B, C, h*w), as a UNet's feature map lies. The similarities
    are then computed where the tokens lie, without copying them into rows; they equal
    tomesd's up to float rounding, so near-ties may break the other way.
    """
    batch = metric.shape[0]
    tokens = metric.shape[2] if channels_first else metric.shape[1]
    if tokens != h * w:
        raise ValueError(f"metric has {tokens} tokens, but the grid h={h} x w={w} has {h * w}")
    if sx < 1 or sy < 1:
        raise ValueError(f"strides must be at least 1, got sx={sx}, sy={sy}")
    if r <= 0 or h < sy or w < sx:
        return TokenMerge(batch, tokens, tokens)

    with torch.no_grad():
        src, dst = partition(
            h, w, sx, sy, use_rand=use_rand, generator=generator, device=metric.device
        )
        best = _best_channels_first if channels_first else _best_rows
        node_max, node_idx = best(metric, src, dst)
        return _token_merge(batch, tokens, src, dst, node_max, node_idx, min(r, src.numel()))


def _best_rows(
    metric: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each source's best cosine similarity to a destination, and which: tomesd's arithmetic
    (float32, bfloat16), so scores and hence ties come out bit for bit equal (on the CPU;
    see `TokenMerge`). In float16 the norm is taken in float32: tomesd's overflows there."""
    if metric.dtype in _NARROW:
        metric = (metric / _norms32(metric, -1)).to(metric.dtype)
    else:
        metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric.index_select(1, src) @ metric.index_select(1, dst).transpose(-1, -2)
    return scores.max(dim=-1)


def _best_channels_first(
    x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`_best_rows` for (B, C, N) `x`, reading it in place: every token is compared with the
    normalised destinations in one matmul (cheaper than gathering the sources' columns), and
    a row's own norm, constant along it, divides only its maximum.

    float16 tokens are first scaled to unit length with norms taken in float32: float16's
    squares overflow above 256 and its dot products above 65504."""
    batch, channels = x.shape[:2]
    if x.dtype in _NARROW:
        unit = (x / _norms32(x, 1)).to(x.dtype)
        destinations = unit.gather(2, dst.view(1, 1, -1).expand(batch, channels, -1))
        node_max, node_idx = torch.bmm(unit.transpose(1, 2), destinations).max(dim=-1)
        return node_max.index_select(1, src), node_idx.index_select(1, src)
    norms = x.square().sum(dim=1).sqrt()  # (B, N); a third of vector_norm's time across C
    destinations = x.gather(2, dst.view(1, 1, -1).expand(batch, channels, -1))
    destinations = destinations / norms.index_select(1, dst).unsqueeze(1)
    node_max, node_idx = torch.bmm(x.transpose(1, 2), destinations).max(dim=-1)
    node_max = node_max / norms
    return node_max.index_select(1, src), node_idx.index_select(1, src)


# float16 overflows above 65504 (a square above 256); bfloat16 has float32's range, and keeps
# tomesd's arithmetic bit for bit. Similarity norms of float16 tokens are taken in float32.
_NARROW = (torch.float16,)


def _norms32(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The vectors' L2 norms along `dim` (kept), accumulated and returned in float32."""
    return torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)


def _token_merge(
    batch: int,
    tokens: int,
    src: torch.Tensor,
    dst: torch.Tensor,
    node_max: torch.Tensor,
    node_idx: torch.Tensor,
    r: int,
) -> TokenMerge:
    """The TokenMerge that merges the r sources with the best matches into their destinations."""
    device = src.device
    order = node_max.argsort(dim=-1, descending=True)  # sources, best match first
    n_dst = dst.numel()
    n_unm = src.numel() - r
    tokens_out = n_unm + n_dst
    unm_tokens = src[order[:, r:]]  # (B, n_unm) grid indices of sources kept as they are
    merged_tokens = src[order[:, :r]]  # (B, r) grid indices of sources merged away
    merged_into = node_idx.gather(1, order[:, :r])  # (B, r) their destination, 0..n_dst

    base_in = torch.arange(batch, device=device).view(-1, 1) * tokens
    base_out = torch.arange(batch, device=device).view(-1, 1) * tokens_out
    keep = torch.cat([unm_tokens, dst.expand(batch, n_dst)], dim=1) + base_in
    add_to = merged_into + n_unm + base_out
    counts = torch.ones(batch, n_dst, dtype=torch.int64, device=device)
    counts.scatter_add_(1, merged_into, torch.ones_like(merged_into))

    inverse = torch.empty(batch, tokens, dtype=torch.int64, device=device)
    inverse.scatter_(1, unm_tokens, torch.arange(n_unm, device=device).expand(batch, n_unm))
    inverse[:, dst] = torch.arange(n_unm, tokens_out, device=device)
    inverse.scatter_(1, merged_tokens, merged_into + n_unm)

    return TokenMerge(
        batch=batch,
        tokens_in=tokens,
        tokens_out=tokens_out,
        keep=keep.flatten(),
        add_from=(merged_tokens + base_in).flatten(),
        add_to=add_to.flatten(),
        counts=counts.unsqueeze(-1),
        inverse=(inverse + base_out).flatten(),
    )


class DestinationRng:
    """The generator that draws random destinations, made on first use for the input's device.

    Seeded: `torch.Generator(device).manual_seed(seed)`, so merges do not depend on the global
    RNG. Unseeded: forked from the global RNG, as tomesd does.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def get(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            if self.seed is None:
                from tomesd.utils import init_generator

                self._generator = init_generator(device, fallback=self._generator)
            else:
                self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def reset(self) -> None:
        """Start again from the seed (or a fresh fork of the global RNG) on the next forward."""
        self._generator = None
