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


@pytest.fixture
def tome_method(request: pytest.FixtureRequest, tome_settings: TomeSettings) -> str:
    """One token reduction method from `--tome-methods`: "tome" (merging) or "todo"
    (key/value downsampling); with `tome_ratio`, parametrized over the pairs each realises."""
    return getattr(request, "param", tome_settings.methods[0])


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


_NO_RATIO: Any = object()  # tome_generate() / tome_gate() called without a ratio


def _needs_ratio(fixture: str) -> None:
    """Fail the test saying what the call lacks (not a TypeError about a missing argument)."""
    __tracebackhide__ = True
    pytest.fail(
        f"{fixture}() needs a merge ratio in [0, 1): {fixture}(0.5), or {fixture}(tome_ratio) "
        "with the tome_ratio fixture to run every --tome-ratios value",
        pytrace=False,
    )


@pytest.fixture
def tome_generate(
    tome_pipeline: Any, tome_settings: TomeSettings, tome_model: ModelSpec
) -> Callable[..., np.ndarray]:
    """`tome_generate(ratio, method="tome")` -> float32 images [N, H, W, 3] in [0, 1].

    Fixed seed and steps from the settings; ToMe (or ToDo, `method="todo"`) is applied for
    the call and removed after, so the cached pipeline is never left patched. A ratio that
    cannot merge anything on this model fails the test with the reason, never passes silently.
    """
    from pytest_tome.engine import TomeNotApplicable, max_ratio
    from pytest_tome.gate.measure.pipeline_calls import generate
    from pytest_tome.methods import METHOD_TOME

    def run(ratio: Any = _NO_RATIO, method: str = METHOD_TOME, **tome_kwargs: Any) -> np.ndarray:
        __tracebackhide__ = True
        if ratio is _NO_RATIO:
            _needs_ratio("tome_generate")
        _check_generate_arguments(ratio, method, tome_kwargs)  # names a bad method or ratio
        limit = max_ratio(tome_kwargs.get("sx", 2), tome_kwargs.get("sy", 2))
        if method == METHOD_TOME and not 0 <= ratio <= limit:
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
                method=method,
                **tome_kwargs,
            )

    return run


def _check_generate_arguments(ratio: Any, method: str, tome_kwargs: dict[str, Any]) -> None:
    """Fail the test naming a bad argument of `tome_generate`, before anything runs."""
    __tracebackhide__ = True
    import inspect

    from pytest_tome.engine import apply_tome

    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        pytest.fail(
            f"tome_generate: ratio={ratio!r} is a {type(ratio).__name__}; pass a number "
            "such as 0.5",
            pytrace=False,
        )
    valid = [
        name
        for name, p in inspect.signature(apply_tome).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("seed", "method")
    ]
    unknown = sorted(set(tome_kwargs) - set(valid))
    if unknown:
        pytest.fail(
            f"tome_generate: unknown argument(s) {', '.join(unknown)}; valid: "
            f"ratio, method, {', '.join(valid)} (the seed comes from --tome-seed)",
            pytrace=False,
        )
    from pytest_tome.engine import TomeArgs

    try:
        TomeArgs(ratio, **tome_kwargs, method=method)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"tome_generate: {exc}", pytrace=False)


@pytest.fixture
def tome_gate(
    request: pytest.FixtureRequest,
    tome_pipeline: Any,
    tome_model: ModelSpec,
    tome_settings: TomeSettings,
    tome_method: str,
) -> Callable[..., Any]:
    """`tome_gate(ratio)`: time, peak memory, PSNR and SSIM of `tome_model` at `ratio`,
    asserted against the stored baseline (or saved with `--tome-save-baselines`).
    The method is the test's `tome_method` (so `--tome-methods` parametrizes gate tests), or
    `tome_gate(ratio, method="todo")`.

    The merged runs are pytest-benchmark's timed rounds (the unmerged run is each round's
    setup or teardown), so `--benchmark-compare` and `--benchmark-json` see them. With
    `--benchmark-skip` the gate still runs, with its own loop. One ratio per test.
    """
    from pytest_tome.gate.check import Gate
    from pytest_tome.gate.store.commands import save_command
    from pytest_tome.progress import progress_writer
    from pytest_tome.session import TOLERANCES_KEY

    # Requested when the gate first times, not as an argument: pytest-benchmark skips every
    # test that names its fixture under --benchmark-skip (the gate must not vanish with the
    # benchmarks), and a skipped ratio (not mergeable) must leave it unused, not unrequested.
    skip = bool(request.config.getoption("benchmark_skip", False))
    info: dict[str, Any] = {}

    def pedantic(*args: Any, **kwargs: Any) -> Any:
        return request.getfixturevalue("benchmark").pedantic(*args, **kwargs)

    def check(ratio: float = _NO_RATIO, method: str | None = None) -> Any:
        __tracebackhide__ = True
        if ratio is _NO_RATIO:
            _needs_ratio("tome_gate")
        method = method or tome_method
        gate = Gate(
            session=tome_session(request.config),
            spec=tome_model,
            pipe=tome_pipeline,
            tolerances=request.node.stash.get(TOLERANCES_KEY, tome_settings.tolerances),
            pedantic=None if skip else pedantic,
            extra_info=info,
            progress=progress_writer(request.config),
            save_command=save_command(
                request.node.nodeid, tome_model, ratio, tome_settings, method
            ),
        )
        try:
            return gate.check(ratio, method)
        finally:
            if info and not skip:
                request.getfixturevalue("benchmark").extra_info.update(info)

    return check
