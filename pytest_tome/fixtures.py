"""The ToMe fixture family: settings, models, ratios, cached pipelines and generation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tome.failures import fail_test_on
from pytest_tome.models.spec import ModelLoadError, ModelSpec
from pytest_tome.session import tome_session
from pytest_tome.settings import SettingsError, TomeSettings

if TYPE_CHECKING:  # numpy is imported only by the code that makes images
    import numpy as np


@pytest.fixture(scope="session")
def tome_settings(pytestconfig: pytest.Config) -> TomeSettings:
    """The resolved `--tome-*` options as one frozen object.

    The device is checked here, at first use, not at start-up (that needs torch). A device
    that is not there fails each test that uses it with the one-line reason, no traceback.
    """
    with fail_test_on(SettingsError, prefix="usage error: "):
        return tome_session(pytestconfig).resolve_device()


@pytest.fixture(scope="session")
def tome_model(request: pytest.FixtureRequest, tome_settings: TomeSettings) -> ModelSpec:
    """One model from `--tome-models` (the tests are parametrized over all of them)."""
    return tome_settings.model(getattr(request, "param", tome_settings.models[0].name))


@pytest.fixture
def tome_ratio(request: pytest.FixtureRequest, tome_settings: TomeSettings) -> float:
    """One merge ratio from `--tome-ratios` (the tests are parametrized over all of them)."""
    return getattr(request, "param", tome_settings.ratios[0])


@pytest.fixture(scope="session")
def tome_pipeline(tome_model: ModelSpec, tome_settings: TomeSettings) -> Iterator[Any]:
    """The pipeline of `tome_model`, built or loaded once per session, progress bars off."""
    import torch

    from pytest_tome.models.loading import load_pipeline

    with fail_test_on(ModelLoadError):
        pipe = load_pipeline(
            tome_model, torch.device(tome_settings.device), getattr(torch, tome_settings.dtype)
        )
    yield pipe
    del pipe


@pytest.fixture
def tome_generate(
    tome_pipeline: Any, tome_settings: TomeSettings, tome_model: ModelSpec
) -> Callable[..., np.ndarray]:
    """`tome_generate(ratio)` -> float32 images [N, H, W, 3] in [0, 1].

    Fixed seed and steps from the settings; ToMe is applied for the call and removed after,
    so the cached pipeline is never left patched. A ratio that cannot merge anything on this
    model fails the test with the reason, never passes silently.
    """
    from pytest_tome.engine import TomeNotApplicable, max_ratio
    from pytest_tome.gate.runs import generate

    def run(ratio: float, **tome_kwargs: Any) -> np.ndarray:
        __tracebackhide__ = True
        limit = max_ratio(tome_kwargs.get("sx", 2), tome_kwargs.get("sy", 2))
        if not 0 <= ratio <= limit:
            pytest.fail(
                f"{tome_model.name}: ratio {ratio:g} is outside [0, {limit:g}], "
                "the most that sx x sy destination cells allow",
                pytrace=False,
            )
        with fail_test_on(TomeNotApplicable, prefix=f"{tome_model.name}: "):
            return generate(
                tome_pipeline,
                ratio,
                steps=tome_settings.steps,
                seed=tome_settings.seed,
                images=tome_settings.images,
                **tome_kwargs,
            )

    return run


@pytest.fixture
def tome_gate(
    request: pytest.FixtureRequest,
    tome_pipeline: Any,
    tome_model: ModelSpec,
    tome_settings: TomeSettings,
    benchmark: Any,
) -> Callable[[float], Any]:
    """`tome_gate(ratio)`: time, peak memory, PSNR and SSIM of `tome_model` at `ratio`,
    asserted against the stored baseline (or saved with `--tome-save-baselines`).

    The merged runs are pytest-benchmark's timed rounds (the unmerged run is each round's
    setup), so `--benchmark-compare` and `--benchmark-json` see them. One ratio per test.
    """
    from pytest_tome.gate.check import TOLERANCES_KEY, Gate, save_command
    from pytest_tome.progress import progress_writer

    def check(ratio: float) -> Any:
        __tracebackhide__ = True
        gate = Gate(
            session=tome_session(request.config),
            spec=tome_model,
            pipe=tome_pipeline,
            tolerances=request.node.stash.get(TOLERANCES_KEY, tome_settings.tolerances),
            pedantic=benchmark.pedantic,
            extra_info=benchmark.extra_info,
            progress=progress_writer(request.config),
            save_command=save_command(request.node.nodeid, tome_model, ratio, tome_settings),
        )
        return gate.check(ratio)

    return check
