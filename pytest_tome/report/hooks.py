"""Where CI looks: JUnit properties per gate test, pytest-html extras, the history file with
its trend, and `--tome-bisect`'s exit status. Hooks only; each job lives in its own module.

The plugin registers `ReportHooks` at configure time (workers and controller alike); what
only the controller may do (append the history, draw the trend, set the exit status) it does
only there. Nothing here imports more than the gate's plain records until a gate test ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_tome.gate.results import RatioResult
from pytest_tome.session import SESSION_KEY

# The results one test recorded (its gate check), for its report.
RESULTS_KEY = pytest.StashKey[list[RatioResult]]()


def register(config: pytest.Config, values: dict[str, Any]) -> None:
    """Register the hooks; pytest-html's only when pytest-html is loaded and writes a report
    (`--html`): without it nothing here imports or changes anything of pytest-html's."""
    here = Path(config.invocation_params.dir)
    history = values.get("tome_history")
    history_path = here / history if history else None
    if history_path is not None and history_path.is_dir():
        raise pytest.UsageError(
            f"--tome-history: {history_path} is a folder; expected a file such as "
            "tome-history.jsonl (one JSON line per run is appended to it)"
        )
    hooks = ReportHooks(config, history_path, bool(values.get("tome_bisect")))
    config.pluginmanager.register(hooks, "tome-report")
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
        from pytest_tome.report.html import HtmlHooks

        config.pluginmanager.register(HtmlHooks(config, RESULTS_KEY), "tome-html")


class ReportHooks:
    def __init__(self, config: pytest.Config, history: Path | None, bisect: bool) -> None:
        self.config = config
        self.history = history
        self.bisect = bisect

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        """The results a test records become its JUnit properties (even when it fails)."""
        state = self.config.stash.get(SESSION_KEY, None)
        before = len(state.results) if state is not None else 0
        try:
            return (yield)
        finally:
            new = state.results[before:] if state is not None else []
            if new:
                from pytest_tome.report import properties

                item.stash[RESULTS_KEY] = new
                properties.record(item.user_properties, new)

    @pytest.hookimpl(trylast=True)  # after the plugin's own: the report folder is written
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.config.stash.get(SESSION_KEY, None)
        if state is None or hasattr(self.config, "workerinput"):
            return
        if self.history is not None and state.results:
            self._history(state)
        if self.bisect:
            from pytest_tome.report.bisect import bisect_status

            code, why = bisect_status(state.sorted_results(), int(session.exitstatus))
            state.notes.append(f"--tome-bisect: exit {code}, {why}")
            session.exitstatus = code

    def _history(self, state: Any) -> None:
        from pytest_tome.gate.store.fingerprints import package_versions
        from pytest_tome.report import history

        settings = {**state.settings.describe(), "save_baselines": state.settings.save_baselines}
        commit = history.git_commit(Path(self.config.rootpath))
        record = history.history_record(
            state.sorted_results(), settings, package_versions(), commit=commit
        )
        try:
            history.append_record(self.history, record)
        except history.HistoryError as exc:
            state.notes.append(f"ERROR: --tome-history: {exc}")
            return
        state.notes.append(f"history: one line appended to {self.history}")
        if state.settings.report is not None:
            self._trend(state, settings)

    def _trend(self, state: Any, settings: dict[str, Any]) -> None:
        from pytest_tome.report import files, history, plots, trend

        read = history.read_history(self.history)
        state.notes.extend(f"WARNING: --tome-history: {problem}" for problem in read.problems)
        tol = state.settings.tolerances
        keys = {
            (entry["device"], trend.entry_key(entry))
            for record in read.records
            for entry in record["results"]
            if "device" in entry
        }
        bands = trend.baseline_bands(state.settings.baselines, keys, tol.speed, tol.psnr)
        png = trend.plot_trend(read.records, bands, plots.subtitle(settings))
        line = trend.trend_line(read.records)
        folder = Path(state.settings.report)
        try:
            if png is not None:
                files.write_atomic(folder / "trend.png", png)
            if line:
                report_md = folder / "report.md"
                if report_md.exists():
                    text = report_md.read_text(encoding="utf-8").rstrip("\n")
                    figure = "\n\n![ToMe across commits](trend.png)" if png is not None else ""
                    files.write_atomic(report_md, f"{text}\n\n{line}{figure}\n".encode())
                if os.environ.get("GITHUB_STEP_SUMMARY"):
                    files.append_step_summary(line)
        except (files.ReportError, OSError) as exc:
            state.notes.append(f"ERROR: the trend could not be written: {exc}")
            return
        if png is not None:
            state.notes.append(f"trend written: trend.png in {folder}")
        if line:
            state.notes.append(line.replace("**", ""))
