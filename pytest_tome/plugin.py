"""pytest hooks of pytest-tome (the `pytest11` entry point). Hooks and wiring only."""

from __future__ import annotations

import os
from collections.abc import Generator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_tome.fixtures import (  # noqa: F401  (fixtures are found by their presence here)
    tome_gate,
    tome_generate,
    tome_method,
    tome_model,
    tome_pipeline,
    tome_ratio,
    tome_settings,
)
from pytest_tome.methods import METHOD_TOME
from pytest_tome.options import add_options, option_values
from pytest_tome.session import SESSION_KEY, TOLERANCES_KEY, TomeSession
from pytest_tome.settings import SettingsError, TomeSettings, build_settings

MARKER = (
    "tome(speed=..., memory=..., psnr=..., ssim=..., alpha=...): per-test tolerances of the "
    "ToMe gate, each optional, overriding --tome-tol-* (e.g. speed='15%', psnr=2.0; "
    "alpha: significance level, default 0.01)"
)
# The fixtures that mean a test uses the plugin (and so torch).
TOME_FIXTURES = ("tome_settings", "tome_model", "tome_pipeline", "tome_generate", "tome_gate")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if config.option.help or config.option.version:
        return
    from pytest_tome.models.presets import PRESETS

    workerinput = getattr(config, "workerinput", None)
    worker = int(workerinput["workerid"].lstrip("gw")) if workerinput else None
    values = option_values(config)
    try:
        settings = build_settings(
            values,
            rootdir=Path(config.rootpath),
            invocation_dir=Path(config.invocation_params.dir),
            presets=PRESETS,
        )
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.report is not None and workerinput is None:
        from pytest_tome.report.files import ReportError, prepare_directory

        try:
            prepare_directory(settings.report)
        except ReportError as exc:
            raise pytest.UsageError(f"--tome-report: {exc}") from None
    # N xdist workers on one CPU: each times with its share of the cores (--tome-threads=auto).
    threads = _cpu_share(int(workerinput.get("workercount", 1))) if workerinput else None
    config.stash[SESSION_KEY] = TomeSession(settings, worker_index=worker, cpu_threads=threads)
    from pytest_tome.report.hooks import register

    register(config, values)  # JUnit properties, pytest-html, --tome-history, --tome-bisect
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "tome-xdist")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One short line: every pytest run shows it, tome or not; details follow in the summary."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return []
    s = session.settings
    ratios = ",".join(f"{r:g}" for r in s.ratios) + _methods(s)
    saving = " (saving baselines)" if s.save_baselines else ""
    return [f"tome: device={s.device} dtype={s.dtype} ratios={ratios}{_timing(s)}{saving}"]


def _timing(s: TomeSettings) -> str:
    """` threads=auto clock=wall` when the timing policy is not the default, else nothing."""
    default = TomeSettings()
    if (s.threads, s.clock) == (default.threads, default.clock):
        return ""
    return f" threads={s.threads or 'auto'} clock={s.clock}"


def _methods(s: TomeSettings) -> str:
    """` methods=tome,todo` when other methods than ToMe alone are tested, else nothing."""
    return "" if s.methods == (METHOD_TOME,) else f" methods={','.join(s.methods)}"


def settings_lines(settings: TomeSettings) -> list[str]:
    """The full settings and versions, for the pytest-tome summary of a run that used them."""
    s = settings
    versions = ", ".join(f"{name} {v}" for name, v in _versions().items() if name != "pytest-tome")
    models = ",".join(m.name for m in s.models)
    ratios = ",".join(f"{r:g}" for r in s.ratios)
    return [
        f"tome: models={models} ratios={ratios}{_methods(s)}",
        (
            f"tome: device={s.device} dtype={s.dtype} steps={s.steps} seed={s.seed}"
            f" images={s.images} rounds={s.rounds} warmup={s.warmup}"
        ),
        (
            f"tome: timing: threads={s.threads or 'auto'} clock={s.clock}"
            f" max_rounds={s.max_rounds} inconclusive={s.inconclusive}"
        ),
        f"tome: baselines={s.baselines} ({versions})",
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    s = session.settings
    if "tome_model" in metafunc.fixturenames:
        names = [m.name for m in s.models]
        metafunc.parametrize("tome_model", names, ids=names, indirect=True, scope="session")
    with_method = "tome_method" in metafunc.fixturenames
    if with_method and "tome_ratio" in metafunc.fixturenames:
        runs = s.runs()  # each method with the ratios it can realise
        metafunc.parametrize(
            ("tome_method", "tome_ratio"), runs, ids=[run_id(*run) for run in runs], indirect=True
        )
    elif "tome_ratio" in metafunc.fixturenames:
        metafunc.parametrize(
            "tome_ratio", s.ratios, ids=[f"r{r:g}" for r in s.ratios], indirect=True
        )
    elif with_method and s.methods != (METHOD_TOME,):
        metafunc.parametrize("tome_method", s.methods, ids=list(s.methods), indirect=True)


def run_id(method: str, ratio: float) -> str:
    """A test id part: `r0.5` for ToMe (as before methods existed), `todo-r0.75` for others."""
    return f"r{ratio:g}" if method == METHOD_TOME else f"{method}-r{ratio:g}"


@pytest.hookimpl(wrapper=True)  # around pytest-benchmark's, to see which marks it adds
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Validate `@pytest.mark.tome(...)` tolerances now, not when the test first runs; when a
    collected test uses a tome fixture, check the device now too (a usage error, exit 4)."""
    gates = {id(item): list(item.own_markers) for item in items if _is_gate(item)}
    yield  # every other plugin's implementation, pytest-benchmark's among them
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    from pytest_tome.gate.decide.tolerances import tolerances_from_marker

    _gates_keep_their_benchmark(config, items, gates)
    # Under xdist a worker's usage error would end as a crash report; there the fixture that
    # first needs the device fails its tests cleanly instead (fixtures.tome_settings).
    if session.worker_index is None and any(_uses_tome(item) for item in items):
        try:
            session.resolve_device()
        except SettingsError as exc:
            raise pytest.UsageError(str(exc)) from None
    for item in items:
        tolerances = session.settings.tolerances
        for marker in reversed(list(item.iter_markers("tome"))):  # the closest one wins
            try:
                tolerances = tolerances_from_marker(tolerances, marker.kwargs, marker.args)
            except ValueError as exc:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.tome: {exc}") from None
        item.stash[TOLERANCES_KEY] = tolerances


def _is_gate(item: pytest.Item) -> bool:
    return "tome_gate" in getattr(item, "fixturenames", ())


def _gates_keep_their_benchmark(
    config: pytest.Config, items: list[pytest.Item], before: dict[int, list[Any]]
) -> None:
    """tome_gate needs pytest-benchmark (a usage error without it) and runs under
    --benchmark-only: it takes the benchmark fixture at run time, so it is no test
    "without a benchmark" that pytest-benchmark would skip.

    pytest-benchmark skips, under --benchmark-only, each test that does not name its fixture,
    by adding a skip mark in this hook. The skip marks a gate gained during the hook (`before`:
    its marks when the hook started) are taken off then: keyed on the option and on when the
    mark came, not on the mark's text, which pytest-benchmark may reword."""
    gates = [item for item in items if id(item) in before]
    if not gates:
        return
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError(
            "pytest-tome's gate (tome_gate) needs pytest-benchmark, which is disabled here "
            "(-p no:benchmark?); enable it, and use --benchmark-disable to switch its timing off"
        )
    if not config.getoption("benchmark_only", False):
        return
    for item in gates:
        kept = before[id(item)]
        item.own_markers[:] = [
            mark
            for mark in item.own_markers
            if mark.name != "skip" or any(mark is old for old in kept)
        ]


def _uses_tome(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in TOME_FIXTURES)


def _cpu_share(workers: int) -> int:
    """N xdist workers on one CPU: each gets its share of the cores, not all of them each."""
    return max(1, (os.cpu_count() or 1) // workers)


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
    def pytest_testnodedown(self, node, error) -> None:
        data = getattr(node, "workeroutput", {}).get("tome")
        if data:
            self.config.stash[SESSION_KEY].merge_workeroutput(data)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers ship their results; the controller (or a plain run) writes the report."""
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tome"] = state.to_workeroutput()
        return
    if not state.results:
        return
    from pytest_tome.report import files
    from pytest_tome.report.summary import report_markdown

    results, headroom = state.sorted_results(), list(state.headroom.values())
    settings = {**state.settings.describe(), "versions": _versions()}
    try:
        if state.settings.report is not None:
            paths = files.write_report(state.settings.report, results, headroom, settings)
            state.notes.append(
                f"report written: {', '.join(p.name for p in paths)} in {state.settings.report}"
            )
        elif os.environ.get("GITHUB_STEP_SUMMARY"):
            files.append_step_summary(report_markdown(results, headroom, settings))
    except (files.ReportError, OSError) as exc:
        state.notes.append(f"ERROR: the report could not be written: {exc}")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    state = terminalreporter.config.stash.get(SESSION_KEY, None)
    if state is None or not (state.results or state.notes):
        return
    from pytest_tome.report.summary import summary_lines

    terminalreporter.write_sep("=", "pytest-tome")
    if state.results:
        for line in settings_lines(state.settings):
            terminalreporter.write_line(line)
    for line in summary_lines(state.sorted_results(), list(state.headroom.values())):
        terminalreporter.write_line(line)
    for note in state.notes:
        terminalreporter.write_line(note, red=note.startswith("ERROR"))


def _versions() -> dict[str, str]:
    return {name: _version(name) for name in ("torch", "diffusers", "tomesd", "pytest-tome")}
