"""Properties of merging joint image-text token streams (SD3 joint, Flux double and single
stream): shapes, ratio 0 the identity, text never touched, the exact merged count, and RoPE
rows that carry each merged token's own position."""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tome.engine import TomeArgs
from pytest_tome.engine.families.flux import FluxImageStreamProcessor
from pytest_tome.engine.families.joint import ImageStreamProcessor, StreamShape
from pytest_tome.engine.layers import REASON_GRID, REASON_MASK, PatchedLayer
from pytest_tome.engine.matching import DestinationRng
from pytest_tome.engine.reducer import Reducer

KINDS = ("sd3", "flux-double", "flux-single")


class Stub:
    """Stands in for the replaced processor: records its inputs, returns a known function."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(
        self,
        attn: Any,
        hidden: torch.Tensor,
        text: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        rope: Any = None,
        **kwargs: Any,
    ) -> Any:
        self.seen.append({"hidden": hidden, "text": text, "rope": rope})
        image_out = hidden * 2 + 1
        return image_out if text is None else (image_out, text * 3)


def processor(kind: str, ratio: float, h: int, w: int, text: int, use_rand: bool = True) -> Any:
    stub, layer = Stub(), PatchedLayer("attn", torch.nn.Identity(), "pytest-tome", 1)
    cls = ImageStreamProcessor if kind == "sd3" else FluxImageStreamProcessor
    reducer = Reducer(TomeArgs(ratio, use_rand=use_rand), DestinationRng(0))
    proc = cls(stub, StreamShape(h, w, text), reducer=reducer, layer=layer)
    return proc, stub, layer


def call(kind: str, proc: Any, image: torch.Tensor, text: torch.Tensor, rope: Any = None) -> Any:
    if kind == "sd3":
        return proc(None, image, text)
    if kind == "flux-double":
        return proc(None, image, text, None, rope)
    return proc(None, torch.cat([text, image], dim=1), None, None, rope)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "kind": draw(st.sampled_from(KINDS)),
        "h": draw(st.integers(2, 10)),
        "w": draw(st.integers(2, 10)),
        "text": draw(st.integers(1, 6)),
        "batch": draw(st.integers(1, 3)),
        "channels": draw(st.integers(1, 6)),
        "ratio": draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.75])),
        "use_rand": draw(st.booleans()),
        "rope": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def streams(case: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    gen = torch.Generator().manual_seed(case["seed"])
    n, t, b, c = case["h"] * case["w"], case["text"], case["batch"], case["channels"]
    image, text = torch.randn(b, n, c, generator=gen), torch.randn(b, t, c, generator=gen)
    rope = None
    if case["rope"] and case["kind"] != "sd3":
        rope = (torch.randn(t + n, 4, generator=gen), torch.randn(t + n, 4, generator=gen))
    return image, text, rope


def split(kind: str, out: Any, text: int) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "flux-single":
        return out[:, text:], out[:, :text]
    return out


@given(cases())
@settings(deadline=None, max_examples=60)
def test_shapes_text_and_merged_count(case: dict[str, Any]) -> None:
    kind, t = case["kind"], case["text"]
    image, text, rope = streams(case)
    proc, stub, layer = processor(kind, case["ratio"], case["h"], case["w"], t, case["use_rand"])
    image_out, text_out = split(kind, call(kind, proc, image, text, rope), t)
    n = image.shape[1]
    assert image_out.shape == image.shape and text_out.shape == text.shape

    merged = n - math.floor(n * case["ratio"])
    received = []
    for seen in stub.seen:  # one call, or one per sample for Flux with RoPE rows
        if seen["text"] is None:
            got_image, got_text = split(kind, seen["hidden"], t)
        else:
            got_image, got_text = seen["hidden"], seen["text"]
        assert got_image.shape[1] == merged  # the attention sees N - floor(rN) image tokens
        received.append(got_text)
        if seen["rope"] is not None:
            assert all(r.shape[0] == t + merged for r in seen["rope"])
            assert all(torch.equal(r[:t], full[:t]) for r, full in zip(seen["rope"], rope))
    assert torch.equal(torch.cat(received), text)  # text reaches the attention untouched
    expected_text_out = text * 2 + 1 if kind == "flux-single" else text * 3
    assert torch.equal(text_out, expected_text_out)  # and comes back as the processor made it
    assert layer.calls >= 1 and (layer.tokens_in, layer.tokens_out) == (n, merged)


@given(cases())
@settings(deadline=None, max_examples=30)
def test_ratio_zero_is_the_identity(case: dict[str, Any]) -> None:
    kind, t = case["kind"], case["text"]
    image, text, rope = streams(case)
    proc, _, layer = processor(kind, 0.0, case["h"], case["w"], t)
    image_out, text_out = split(kind, call(kind, proc, image, text, rope), t)
    assert torch.equal(image_out, image * 2 + 1)
    assert torch.equal(text_out, text * 2 + 1 if kind == "flux-single" else text * 3)
    assert layer.merged_calls == 0 and layer.fallbacks["ratio merges no token"] == 1


def test_each_merged_token_carries_its_own_position() -> None:
    """RoPE row i of the merged stream is the row of a token merged into row i: an unmerged
    source its own, a merged group its destination's (the top-left of its 2 x 2 cell)."""
    h = w = 8
    n, t = h * w, 3
    for kind in ("flux-double", "flux-single"):
        proc, stub, _ = processor(kind, 0.5, h, w, t)
        positions = torch.arange(t + n, dtype=torch.float32)[:, None].expand(-1, 4)
        image = torch.randn(1, n, 6, generator=torch.Generator().manual_seed(1))
        call(kind, proc, image, torch.zeros(1, t, 6), (positions, positions))
        kept = stub.seen[0]["rope"][0][:, 0].long()
        assert torch.equal(kept[:t], torch.arange(t))
        kept = kept[t:] - t  # image position of each merged row
        # which merged row every image token went into: unmerge a row index through the stub
        stub_rows = torch.arange(n - n // 2, dtype=torch.float32).view(1, -1, 1)
        merging = proc.matching(image)
        into = merging.unmerge(stub_rows)[0, :, 0].long()
        assert len(set(kept.tolist())) == n // 2
        for row, token in enumerate(kept.tolist()):
            assert into[token] == row  # the position is that of a token in this merged row
            if (into == row).sum() > 1:  # a group: its destination, fixed for a batch of one
                assert token // w % 2 == 0 and token % w % 2 == 0


def test_masks_and_unknown_grids_fall_back_with_a_reason() -> None:
    image, text = torch.randn(2, 16, 4), torch.randn(2, 3, 4)
    proc, stub, layer = processor("sd3", 0.5, 4, 4, 3)
    proc(None, image, text, torch.ones(2, 19, 19))
    assert layer.fallbacks[REASON_MASK] == 1 and stub.seen[0]["hidden"] is image
    proc.shape.height = 0  # the model's pre-hook never ran
    proc(None, image, text)
    assert layer.fallbacks[REASON_GRID] == 1 and layer.merged_calls == 0
