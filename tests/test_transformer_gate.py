"""The gate on tiny-dit and tiny-pixart through pytester: it saves, then passes, and a
processor replaced after apply_tome is a run-time no-op that fails naming the blocks."""

from __future__ import annotations

import json

import pytest

GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# As tests/test_gate_cycle.py: short calls scatter on a shared machine, so a wide speed
# tolerance keeps unchanged reruns decidable.
FAST = (
    "--tome-steps=3",
    "--tome-rounds=8",
    "--tome-warmup=1",
    "--tome-tol-speed=25%",
    "--tome-baselines=baselines",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
)
MODELS = ("tiny-dit", "tiny-pixart")

# User code that swaps the attention processors of a patched transformer for plain ones.
REPLACE = """
import pytest
from diffusers.models.attention_processor import AttnProcessor2_0
import pytest_tome.gate.measure.pipeline_calls as runs
from pytest_tome.engine import patch_of

_run = runs.run_pipeline

def replaced_run(pipe, **kwargs):
    if patch_of(pipe) is not None:
        pipe.transformer.set_attn_processor(AttnProcessor2_0())
    return _run(pipe, **kwargs)

@pytest.fixture(autouse=True)
def plant(monkeypatch):
    monkeypatch.setattr(runs, "run_pipeline", replaced_run)
"""


@pytest.mark.slow
def test_the_gate_saves_then_passes_on_tiny_dit_and_tiny_pixart(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    args = (*FAST, f"--tome-models={','.join(MODELS)}", "--tome-ratios=0.3,0.5")
    saved = pytester.runpytest(*args, "--tome-save-baselines")
    saved.assert_outcomes(passed=4)
    for name in MODELS:
        baseline = json.loads((pytester.path / "baselines" / "cpu" / f"{name}.json").read_text())
        assert sorted(baseline["entries"]) == ["0.3", "0.5"]
        assert all(entry["psnr"] > 20 for entry in baseline["entries"].values())
    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(["*tiny-dit (cpu*", "*tiny-pixart (cpu*"])


@pytest.mark.slow
def test_a_replaced_processor_fails_the_gate_naming_the_blocks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    pytester.makeconftest(REPLACE)
    result = pytester.runpytest(
        *FAST, "--tome-models=tiny-dit", "--tome-ratios=0.5", "--tome-save-baselines"
    )
    result.assert_outcomes(failed=1)
    stopped = [line for line in result.stdout.lines if "merging stopped at run time" in line]
    assert any("transformer_blocks.0" in line for line in stopped), result.stdout.str()
    assert not (pytester.path / "baselines" / "cpu" / "tiny-dit.json").exists()
