"""The regression gate: measure one model at one ratio, compare with its baseline, decide.

Data flows one way: pipeline -> interleaved runs (ratio_run, measure) -> quality ->
RatioResult -> baseline comparison (verdicts) -> recorded in the session for the report.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from pytest_tome.gate.ratio_run import TOME_ARGS, measure_ratio
from pytest_tome.gate.results import INCONCLUSIVE, NOT_MERGEABLE, RatioResult
from pytest_tome.gate.tolerances import Tolerances
from pytest_tome.methods import METHOD_TOME, METHODS, realises, valid_todo_ratios
from pytest_tome.models.spec import ModelSpec
from pytest_tome.session import TOLERANCES_KEY, TomeSession  # noqa: F401  (re-exported)

_METHOD_NAMES = {"tome": "ToMe", "todo": "ToDo"}
# Timed UNet forwards behind each headroom share (their median): near an 85% share, a few
# percent of noise moves the Amdahl bound 1 / (1 - share) by a whole 1x.
HEADROOM_REPEATS = 5


@dataclass
class Gate:
    """Everything one gate test needs; `check(ratio)` measures, decides and asserts."""

    session: TomeSession
    spec: ModelSpec
    pipe: Any
    tolerances: Tolerances
    pedantic: Callable[..., Any]
    extra_info: dict[str, Any]
    progress: Callable[[str], None]
    save_command: str

    def check(self, ratio: float, method: str = METHOD_TOME) -> RatioResult:
        __tracebackhide__ = True
        from pytest_tome.engine import max_ratio

        if method not in METHODS:
            pytest.fail(f"method {method!r} is not one of {', '.join(METHODS)}", pytrace=False)
        limit = max_ratio(TOME_ARGS["sx"], TOME_ARGS["sy"])
        if method == METHOD_TOME and ratio > limit:
            why = f"ratio {ratio:g} is above {limit:g}, the most 2x2 cells allow"
            skip = (
                f"ratio {ratio:g} is not mergeable: above {limit:g}, "
                f"the most sx={TOME_ARGS['sx']}, sy={TOME_ARGS['sy']} allow"
            )
        elif not realises(method, ratio):
            why = f"ToDo cannot remove {ratio:g} of the keys/values, only {valid_todo_ratios()}"
            skip = f"ToDo at ratio {ratio:g} is not mergeable: {why}"
        else:
            why = skip = ""
        if why:
            self.record(
                RatioResult(
                    self.spec.key,
                    ratio,
                    self.device_key(),
                    verdict=NOT_MERGEABLE,
                    reasons=(why,),
                    method=method,
                )
            )
            pytest.skip(f"{self.spec.name}: {skip}")
        self._headroom()
        result = measure_ratio(self, ratio, method)
        self.extra_info.update(
            model=self.spec.name,
            method=method,
            ratio=ratio,
            speedup=result.speedup,
            speedup_ci=result.speedup_ci,
            psnr=_json_float(result.psnr),
            ssim=result.ssim,
            memory_tome=result.memory_tome,
            memory_method=result.memory_method,
        )
        return self._decide(result)

    # --- measuring (the run itself: ratio_run.measure_ratio) --------------------------------

    def undecided(self, ratio: float, method: str) -> Callable[..., bool]:
        """Whether the speedup so far is too noisy to decide against the stored baseline."""
        from pytest_tome.gate.runtime import peek_baseline
        from pytest_tome.gate.speed import speed_undecided

        s = self.session.settings
        baseline = (
            None
            if s.save_baselines
            else peek_baseline(s.baselines, self.device_key(), self.spec.key, ratio, method)
        )
        return lambda base, tome: speed_undecided(base, tome, baseline, self.tolerances)

    def _headroom(self) -> None:
        """Once per model: the share of a denoiser forward spent in the layers ToMe merges."""
        if self.spec.key in self.session.headroom:
            return
        import torch

        from pytest_tome.engine import TomeNotApplicable, apply_tome
        from pytest_tome.gate.headroom import measure_headroom
        from pytest_tome.gate.measure import synchronizer
        from pytest_tome.gate.runs import denoiser_forward, merged_parts

        try:
            patch = apply_tome(self.pipe, 0.5, **TOME_ARGS)
            layers = merged_parts(patch)
            patch.remove()
        except TomeNotApplicable:
            layers = []
        self.progress(f"{self.spec.name}: timing the layers ToMe merges (headroom)")
        self.session.headroom[self.spec.key] = measure_headroom(
            self.spec.key,
            layers,
            denoiser_forward(self.pipe),
            repeats=HEADROOM_REPEATS,
            sync=synchronizer(torch.device(self.session.settings.device)),
        )

    # --- deciding --------------------------------------------------------------------------

    def _decide(self, result: RatioResult) -> RatioResult:
        __tracebackhide__ = True
        from pytest_tome.gate.baselines import BaselineEntry, load_entry, save_entries
        from pytest_tome.gate.verdicts import decide

        s = self.session.settings
        fingerprint = self._fingerprint(result)
        if s.save_baselines:
            decision = decide(
                result, None, self.tolerances, quality_applies=not self.spec.weights_are_random
            )
            result = replace(
                result, verdict=decision.verdict, reasons=decision.reasons, checks=decision.checks
            )
            with self._failing(result):
                outcome = save_entries(
                    s.baselines, result.device, self.spec.key, [BaselineEntry(result, fingerprint)]
                )
            if outcome.message:
                self.session.notes.append(outcome.message)
            return self.record(result)
        with self._failing(result):
            baseline = load_entry(
                s.baselines,
                result.device,
                self.spec.key,
                result.ratio,
                fingerprint=fingerprint,
                save_command=self.save_command,
                method=result.method,
            )
        decision = decide(
            result, baseline, self.tolerances, quality_applies=not self.spec.weights_are_random
        )
        result = self.record(
            replace(
                result, verdict=decision.verdict, reasons=decision.reasons, checks=decision.checks
            )
        )
        if decision.verdict == INCONCLUSIVE:
            self._inconclusive(result, decision.table)
        if decision.verdict == "fail":
            pytest.fail(
                f"{_METHOD_NAMES[result.method]} gate failed for {self.spec.name} at ratio "
                f"{result.ratio:g} on "
                f"{result.device}:\n{decision.table}",
                pytrace=False,
            )
        return result

    def _inconclusive(self, result: RatioResult, table: str) -> None:
        """Too noisy to decide: fail with what to do, or (--tome-inconclusive=warn) note it."""
        __tracebackhide__ = True
        s = self.session.settings
        text = (
            f"ToMe gate inconclusive for {self.spec.name} at ratio {result.ratio:g} on "
            f"{result.device}: too noisy to tell a pass from a fail after "
            f"{len(result.time_tome)} rounds (threads={s.threads or 'auto'}).\n{table}\n"
            "Rerun on a quieter machine, raise --tome-rounds or --tome-max-rounds, use "
            "--tome-threads=1, or widen --tome-tol-speed; --tome-inconclusive=warn lets it pass."
        )
        if s.inconclusive == "fail":
            pytest.fail(text, pytrace=False)
        self.session.notes.append(f"WARNING: {text.splitlines()[0]}")

    @contextmanager
    def _failing(self, result: RatioResult) -> Iterator[None]:
        """A baseline problem fails the test with its message and is recorded for the report."""
        __tracebackhide__ = True
        from pytest_tome.gate.baselines import BaselineError, problem_of

        try:
            yield
        except BaselineError as exc:
            why = (str(exc).splitlines()[0],)
            checks = (*result.checks, ("baseline", problem_of(exc)))
            self.record(replace(result, verdict="fail", reasons=why, checks=checks))
            raise pytest.fail.Exception(str(exc), pytrace=False) from None

    def _fingerprint(self, result: RatioResult) -> dict[str, Any]:
        from pytest_tome.gate.fingerprints import fingerprint

        s = self.session.settings
        image = result.image_base
        return fingerprint(
            model=self.spec.name,
            steps=s.steps,
            seed=s.seed,
            images=s.images,
            resolution=[image.height, image.width] if image else None,
            dtype=s.dtype,
            tome={**TOME_ARGS, "method": result.method},
            **self.timing(),
        )

    def timing(self) -> dict[str, Any]:
        """The torch thread count and clock that timed a CPU run: they move the speedup, so
        they are part of the fingerprint (GPU timings depend on neither: wall time, synced)."""
        import torch

        s = self.session.settings
        if torch.device(s.device).type != "cpu":
            return {}
        threads = s.threads or torch.get_num_threads()
        clock = s.clock if s.clock != "auto" else "cpu" if s.threads == 1 else "wall"
        return {"threads": threads, "clock": clock}

    def device_key(self) -> str:
        import torch

        from pytest_tome.gate.baselines import device_key_of

        return device_key_of(torch.device(self.session.settings.device))

    def record(self, result: RatioResult) -> RatioResult:
        self.session.results.append(result)
        return result


def save_command(
    nodeid: str, spec: ModelSpec, ratio: float, settings: Any, method: str = METHOD_TOME
) -> str:
    """The command that writes the missing baseline for one test, with the run's settings."""
    words = [f"pytest '{nodeid}'", f"--tome-models={spec.name}", f"--tome-ratios={ratio:g}"]
    if method != METHOD_TOME:
        words.append(f"--tome-methods={method}")
    defaults = type(settings)()
    for name in ("dtype", "steps", "seed", "images", "rounds", "warmup"):
        if getattr(settings, name) != getattr(defaults, name):
            words.append(f"--tome-{name}={getattr(settings, name)}")
    if settings.device != "cpu":
        words.append(f"--tome-device={settings.device}")
    folder = Path(settings.baselines)
    if folder.resolve() != (Path.cwd() / "baselines").resolve():  # not the default from here
        words.append("--tome-baselines=" + shlex.quote(os.path.relpath(folder)))
    return " ".join([*words, "--tome-save-baselines"])


def _json_float(value: float | None) -> float | str | None:
    from pytest_tome.gate.results import float_to_json

    return float_to_json(value)
