"""pytest hooks of pytest-tome (the `pytest11` entry point). Hooks and wiring only."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from pytest_tome.fixtures import (  # noqa: F401  (fixtures are found by their presence here)
    tome_generate,
    tome_model,
    tome_pipeline,
    tome_ratio,
    tome_settings,
)
from pytest_tome.options import add_options, option_values
from pytest_tome.session import SESSION_KEY, TomeSession
from pytest_tome.settings import SettingsError, build_settings

MARKER = (
    "tome(speed=None, memory=None, psnr=None, ssim=None): per-test tolerances of the ToMe "
    "gate, overriding --tome-tol-*"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if config.option.help or config.option.version:
        return
    try:  # TEMP until presets.py lands
        from pytest_tome.presets import PRESETS
    except ImportError:
        PRESETS = ()

    workerinput = getattr(config, "workerinput", None)
    worker = int(workerinput["workerid"].lstrip("gw")) if workerinput else None
    try:
        settings = build_settings(option_values(config), rootdir=Path(config.rootpath),
                                  worker_index=worker, presets=PRESETS)
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = TomeSession(settings)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "tome-xdist")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return []
    s = session.settings
    versions = ", ".join(f"{name} {_version(name)}" for name in ("torch", "diffusers", "tomesd"))
    return [
        f"tome: models={','.join(m.name for m in s.models)} ratios={','.join(f'{r:g}' for r in s.ratios)}",
        f"tome: device={s.device} dtype={s.dtype} steps={s.steps} seed={s.seed} "
        f"images={s.images} rounds={s.rounds} warmup={s.warmup}",
        f"tome: baselines={s.baselines}{' (saving)' if s.save_baselines else ''} ({versions})",
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    s = session.settings
    if "tome_model" in metafunc.fixturenames:
        names = [m.name for m in s.models]
        metafunc.parametrize("tome_model", names, ids=names, indirect=True, scope="session")
    if "tome_ratio" in metafunc.fixturenames:
        metafunc.parametrize("tome_ratio", s.ratios, ids=[f"r{r:g}" for r in s.ratios],
                             indirect=True)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


class XdistHooks:
    """Registered only when pytest-xdist is present: ship results to the controller."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl
    def pytest_testnodedown(self, node, error) -> None:  # noqa: ANN001 (xdist's types)
        data = getattr(node, "workeroutput", {}).get("tome")
        if data:
            self.config.stash[SESSION_KEY].merge_workeroutput(data)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tome"] = state.to_workeroutput()
