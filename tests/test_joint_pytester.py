"""The transformer pipelines from a user's seat (pytester): fixtures on all four, then the gate's
save and pass on tiny-sd3 and tiny-flux."""

from __future__ import annotations

import pytest
from diffusers import FluxPipeline, StableDiffusion3Pipeline  # noqa: F401 (imported once)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODELS = ("tiny-sd3", "tiny-flux")


USER_TEST = """
import numpy as np

def test_merged_images_differ_but_stay_close(tome_ratio, tome_generate):
    plain, merged = tome_generate(ratio=0.0), tome_generate(ratio=tome_ratio)
    assert merged.shape == plain.shape == (1, 64, 64, 3)
    assert not np.array_equal(merged, plain)
    assert np.abs(merged - plain).mean() < 0.1
"""


@pytest.mark.slow
@pytest.mark.parametrize("models", [("tiny-sd3", "tiny-flux"), ("tiny-dit", "tiny-pixart")])
def test_a_users_test_file_runs_on_the_transformer_pipelines(
    pytester: pytest.Pytester, models: tuple[str, str]
) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest(
        f"--tome-models={','.join(models)}", "--tome-ratios=0.3,0.5", "--tome-steps=2", "-v",
        "-p", "no:randomly", "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    for case in (f"{m}-r{r}" for m in models for r in ("0.3", "0.5")):
        result.stdout.fnmatch_lines([f"*[[]{case}[]] PASSED*"])


GATE_TEST = """
def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""


@pytest.mark.slow
def test_the_gate_saves_then_passes_on_tiny_sd3_and_tiny_flux(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    args = (
        "--tome-models=tiny-sd3,tiny-flux", "--tome-ratios=0.3,0.5", "--tome-steps=2",
        "--tome-rounds=6", "--tome-warmup=1", "--tome-baselines=baselines",
        "--tome-inconclusive=warn",  # a shared CPU: noise must not fail this test of the flow
        "-p", "no:randomly", "-p", "no:cacheprovider",
    )  # fmt: skip
    pytester.runpytest(*args, "--tome-save-baselines").assert_outcomes(passed=4)
    for name in MODELS:
        assert (pytester.path / "baselines" / "cpu" / f"{name}.json").is_file()
    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines(["tiny-sd3 (cpu*", "*0.5*pass*"])
    again.stdout.fnmatch_lines(["tiny-flux (cpu*", "*0.5*pass*"])
