"""Properties of bipartite soft matching (pytest_tome.engine.matching), on random token tensors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tomesd.merge import bipartite_soft_matching_random2d

from pytest_tome.engine.matching import TokenMerge, bipartite_soft_matching_2d

DTYPES = (torch.float32, torch.float64, torch.bfloat16)


@st.composite
def cases(draw: st.DrawFn, *, with_cells: bool = False, dtypes: tuple = DTYPES) -> dict:
    """A token grid, strides, r, dtype and a seed for the tokens and the destinations."""
    sx, sy = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    low_w, low_h = (sx, sy) if with_cells else (1, 1)
    h, w = draw(st.integers(low_h, 12)), draw(st.integers(low_w, 12))
    return {
        "batch": draw(st.integers(1, 3)),
        "h": h,
        "w": w,
        "sx": sx,
        "sy": sy,
        "r": draw(st.integers(0, h * w)),
        "channels": draw(st.integers(1, 8)),
        "dtype": draw(st.sampled_from(dtypes)),
        "use_rand": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def tokens(case: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], case["h"] * case["w"], case["channels"])
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(case["dtype"])


def match(x: torch.Tensor, case: dict, *, channels_first: bool = False) -> TokenMerge:
    """The matching of (B, N, C) `x`; `channels_first` hands it over as (B, C, N)."""
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    metric = x.transpose(1, 2).contiguous() if channels_first else x
    return bipartite_soft_matching_2d(
        metric, case["h"], case["w"], case["sx"], case["sy"], case["r"],
        use_rand=case["use_rand"], generator=gen, channels_first=channels_first,
    )  # fmt: skip


def merge_channels_first(merging: TokenMerge, x: torch.Tensor) -> torch.Tensor:
    """`merging.merge_channels_first` of (B, N, C) `x`, handed back as (B, N', C)."""
    return merging.merge_channels_first(x.transpose(1, 2).contiguous()).transpose(1, 2)


def destinations(case: dict) -> list[int]:
    """Brute force: the grid index of each cell's destination, drawn as tomesd draws it."""
    h, w, sx, sy = case["h"], case["w"], case["sx"], case["sy"]
    if case["use_rand"]:
        gen = torch.Generator().manual_seed(case["seed"] + 1)
        picks = torch.randint(sx * sy, (h // sy, w // sx, 1), generator=gen).flatten().tolist()
    else:
        picks = [0] * ((h // sy) * (w // sx))
    cells = [(i, j) for i in range(h // sy) for j in range(w // sx)]
    return [(i * sy + k // sx) * w + j * sx + k % sx for (i, j), k in zip(cells, picks)]


@given(cases())
@settings(deadline=None)
def test_merged_length_is_n_minus_min_r_sources(case: dict) -> None:
    x = tokens(case)
    n = x.shape[1]
    n_dst = (case["h"] // case["sy"]) * (case["w"] // case["sx"])
    merged = match(x, case).merge(x)
    removed = min(case["r"], n - n_dst) if n_dst > 0 else 0  # no whole cell: nothing to merge into
    assert merged.shape == (x.shape[0], n - removed, x.shape[2])


@given(cases())
@settings(deadline=None)
def test_unmerge_of_merge_keeps_shape_dtype_device(case: dict) -> None:
    x = tokens(case)
    merging = match(x, case)
    back = merging.unmerge(merging.merge(x))
    assert (back.shape, back.dtype, back.device) == (x.shape, x.dtype, x.device)


@given(cases(dtypes=(torch.float32, torch.float64)))
@settings(deadline=None)
def test_channels_first_merge_is_the_row_merge(case: dict) -> None:
    """UNet2D merges its (B, C, N) feature map where it lies, summing each group in token
    order: `merge`'s result up to float rounding."""
    x = tokens(case)
    merging = match(x, case)
    torch.testing.assert_close(merge_channels_first(merging, x), merging.merge(x))


@given(cases(dtypes=(torch.float64,)))
@settings(deadline=None)
def test_channels_first_matching_is_the_row_matching(case: dict) -> None:
    """Similarities computed in place from (B, C, N) pick the same merges as from rows (in
    float64, where rounding cannot swap two different scores). One channel is left out: every
    cosine is then +-1, all ties, and the two roundings break them differently."""
    case = {**case, "channels": max(case["channels"], 2)}
    x = tokens(case)
    rows, channels_first = match(x, case), match(x, case, channels_first=True)
    assert rows.tokens_out == channels_first.tokens_out
    for name in ("keep", "add_from", "add_to", "counts", "inverse"):
        ours, theirs = getattr(rows, name), getattr(channels_first, name)
        assert (ours is None and theirs is None) or torch.equal(ours, theirs), name


@given(cases())
@settings(deadline=None)
def test_r_zero_is_the_identity(case: dict) -> None:
    x = tokens(case)
    merging = match(x, {**case, "r": 0})
    assert merging.is_identity
    assert torch.equal(merging.merge(x), x)
    assert torch.equal(merging.unmerge(x), x)


@given(cases(with_cells=True), st.data())
@settings(deadline=None)
def test_sources_equal_to_their_destination_come_back_exactly(
    case: dict, data: st.DataObject
) -> None:
    # Destinations are distinct scaled unit vectors, so each source copying one of them has
    # cosine 1 with exactly that one; small integers keep every mean exact, even in bfloat16.
    dst = destinations(case)
    n = case["h"] * case["w"]
    x = torch.zeros(case["batch"], n, len(dst) + 1, dtype=case["dtype"])
    for b in range(case["batch"]):
        for j, token in enumerate(dst):
            x[b, token, j] = data.draw(st.sampled_from([-4, -2, -1, 1, 3, 8]))
        for token in sorted(set(range(n)) - set(dst)):
            x[b, token] = x[b, dst[data.draw(st.integers(0, len(dst) - 1))]]
    merging = match(x, case)
    assert torch.equal(merging.unmerge(merging.merge(x)), x)
    merging = match(x, case, channels_first=True)
    assert torch.equal(merging.unmerge(merge_channels_first(merging, x)), x)


@given(cases(with_cells=True, dtypes=(torch.float64,)))
@settings(deadline=None)
def test_each_merged_token_is_the_mean_of_its_group(case: dict) -> None:
    case = {**case, "channels": max(case["channels"], 3)}  # one channel: all cosines are +-1, ties
    x = tokens(case)
    n = x.shape[1]
    dst = destinations(case)
    src = [t for t in range(n) if t not in dst]
    r = min(case["r"], len(src))
    merged = match(x, case).merge(x)
    merged_in_place = merge_channels_first(match(x, case, channels_first=True), x)
    unit = x / x.norm(dim=-1, keepdim=True)
    for b in range(x.shape[0]):
        # Brute force: each source's best destination; the r best-matched sources merge.
        best = {s: max(dst, key=lambda d: float(unit[b, s] @ unit[b, d])) for s in src}
        score = {s: float(unit[b, s] @ unit[b, best[s]]) for s in src}
        merged_away = set(sorted(src, key=lambda s: -score[s])[:r]) if case["r"] > 0 else set()
        groups = [[s] for s in src if s not in merged_away]
        groups += [[d] + [s for s in merged_away if best[s] == d] for d in dst]
        expected = sorted(tuple(x[b, g].mean(dim=0).tolist()) for g in groups)
        for result in (merged, merged_in_place):
            got = sorted(tuple(row) for row in result[b].tolist())
            assert torch.allclose(torch.tensor(got), torch.tensor(expected), rtol=1e-9, atol=1e-12)


@given(cases())
@settings(deadline=None)
def test_fixed_destinations_merge_each_item_as_if_alone(case: dict) -> None:
    case = {**case, "use_rand": False}
    x = tokens(case)
    merging = match(x, case)
    merged = merging.merge(x)
    for b in range(x.shape[0]):
        alone = match(x[b : b + 1], case)
        assert torch.equal(merged[b : b + 1], alone.merge(x[b : b + 1]))
        assert torch.equal(merging.unmerge(merged)[b : b + 1], alone.unmerge(merged[b : b + 1]))


@given(cases(with_cells=True))
@settings(deadline=None)
def test_same_result_as_tomesd(case: dict) -> None:
    x = tokens(case)
    theirs_merge, theirs_unmerge = bipartite_soft_matching_random2d(
        x, case["w"], case["h"], case["sx"], case["sy"], case["r"],
        no_rand=not case["use_rand"], generator=torch.Generator().manual_seed(case["seed"] + 1),
    )  # fmt: skip
    ours = match(x, case)
    merged = ours.merge(x)
    assert torch.equal(merged, theirs_merge(x))
    assert torch.equal(ours.unmerge(merged), theirs_unmerge(merged))


def test_mismatched_grid_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"12 tokens, but the grid h=4 x w=4 has 16"):
        bipartite_soft_matching_2d(torch.zeros(1, 12, 3), 4, 4, 2, 2, 3)


def test_random_destinations_follow_the_generator() -> None:
    x = torch.randn(2, 64, 4, generator=torch.Generator().manual_seed(0))

    def merged(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return bipartite_soft_matching_2d(x, 8, 8, 2, 2, 24, generator=gen).merge(x)

    assert torch.equal(merged(1), merged(1))
    assert not torch.equal(merged(1), merged(2))
