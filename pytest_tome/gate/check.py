"""The gate test's control flow: measure one model at one ratio, decide, store, and turn the
outcome into pytest's pass, fail or skip.

The three jobs live in their own packages and know nothing of pytest or of each other's
internals: measure (a RunPlan in, a RatioResult of raw samples out), decide (a RatioResult and
its baseline in, a Decision out) and store (baselines, fingerprints, the save command). Data
flows one way: plan -> measure -> decide -> store/record; this module alone calls pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest

from pytest_tome.failures import fail_test_on
from pytest_tome.gate.decide.tolerances import Tolerances
from pytest_tome.gate.measure.plan import CLOCK_CPU, RunPlan, run_plan, tome_args, unmergeable
from pytest_tome.gate.results import FAIL, INCONCLUSIVE, NEW, NOT_MERGEABLE, RatioResult
from pytest_tome.methods import METHOD_TOME, METHODS
from pytest_tome.models.spec import ModelSpec
from pytest_tome.session import TomeSession

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
        if method not in METHODS:
            pytest.fail(f"method {method!r} is not one of {', '.join(METHODS)}", pytrace=False)
        why = unmergeable(ratio, method)
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
            name = _METHOD_NAMES[method]
            pytest.skip(f"{self.spec.name}: {name} at ratio {ratio:g} is not mergeable: {why}")
        plan = self.plan(ratio, method)
        baseline = self._stored_baseline(plan)
        self._headroom(plan)
        result = self._measure(plan, baseline)
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

    # --- measuring (gate.measure) -----------------------------------------------------------

    def plan(self, ratio: float, method: str) -> RunPlan:
        """What this test measures with, from the settings."""
        return run_plan(
            self.session.settings, self.spec.name, ratio, method, self.session.cpu_threads
        )

    def _measure(self, plan: RunPlan, baseline: RatioResult | None) -> RatioResult:
        __tracebackhide__ = True
        from pytest_tome.engine import TomeNotApplicable
        from pytest_tome.gate.decide.stats import paired_speedup
        from pytest_tome.gate.measure.merged_calls import MergingStopped
        from pytest_tome.gate.measure.ratio import measure_ratio

        try:
            with fail_test_on(TomeNotApplicable, prefix=f"{self.spec.name}: "):
                result = measure_ratio(
                    self.pipe,
                    plan,
                    model_key=self.spec.key,
                    device_key=self.device_key(),
                    quality=self.spec.quality_gated,
                    pedantic=self.pedantic,
                    progress=self.progress,
                    undecided=self.undecided(plan, baseline),
                )
            speedup = paired_speedup(result.time_base, result.time_tome)
            return replace(
                result,
                speedup=speedup.median,
                speedup_ci=speedup.ci,
                random_weights=self.spec.weights_are_random,
            )
        except MergingStopped as exc:
            stopped = exc.lines
        self.record(
            RatioResult(self.spec.key, plan.ratio, self.device_key(), verdict="fail",
                        reasons=stopped, method=plan.method)
        )  # fmt: skip
        pytest.fail(
            f"ToMe gate failed for {self.spec.name} at ratio {plan.ratio:g}:\n"
            + "\n".join(stopped),
            pytrace=False,
        )

    def undecided(self, plan: RunPlan, baseline: RatioResult | None) -> Callable[..., bool]:
        """Whether the speedup so far is too noisy to decide against `baseline` (or to store)."""
        from pytest_tome.gate.decide.admission import interval_too_short
        from pytest_tome.gate.decide.speed import speed_undecided

        if self.session.settings.save_baselines:
            return lambda base, tome: (
                speed_undecided(base, tome, None, self.tolerances) or interval_too_short(base, tome)
            )
        looks = self.looks(plan)
        return lambda base, tome: speed_undecided(base, tome, baseline, self.tolerances, looks)

    def _stored_baseline(self, plan: RunPlan) -> RatioResult | None:
        """The baseline, checked before the first round (corrupt, no quality, other settings
        fail now); None when saving or missing (then measured, and the save command shown)."""
        __tracebackhide__ = True
        from pytest_tome.gate.store.baselines import MissingBaseline

        if self.session.settings.save_baselines:
            return None
        empty = RatioResult(self.spec.key, plan.ratio, self.device_key(), method=plan.method)
        with self._failing(empty):
            try:
                return self._load(empty, self._fingerprint(plan, None), unknown=("resolution",))
            except MissingBaseline:
                return None

    def _load(self, result: RatioResult, fingerprint: dict, **kw: Any) -> RatioResult:
        from pytest_tome.gate.store.baselines import load_entry

        return load_entry(
            self.session.settings.baselines, result.device, self.spec.key, result.ratio,
            fingerprint=fingerprint, save_command=self.save_command, method=result.method,
            quality=self.spec.quality_gated, **kw,
        )  # fmt: skip

    @staticmethod
    def looks(plan: RunPlan) -> tuple[int, ...]:
        """The round counts at which the speed call may stop (fixed before any round)."""
        from pytest_tome.gate.decide.speed import look_schedule

        return look_schedule(plan.rounds, plan.most_rounds)

    def _headroom(self, plan: RunPlan) -> None:
        """Once per model: the share of a denoiser forward spent in the layers ToMe merges,
        timed with the plan's threads and clock, as the rounds are."""
        if self.spec.key in self.session.headroom:
            return
        import torch

        from pytest_tome.gate.measure.headroom import model_headroom

        self.progress(f"{self.spec.name}: timing the layers ToMe merges (headroom)")
        self.session.headroom[self.spec.key] = model_headroom(
            self.spec.key,
            self.pipe,
            torch.device(plan.device),
            HEADROOM_REPEATS,
            threads=plan.threads,
            cpu_clock=plan.clock == CLOCK_CPU,
        )

    # --- deciding --------------------------------------------------------------------------

    def _decide(self, result: RatioResult) -> RatioResult:
        __tracebackhide__ = True
        from pytest_tome.gate.decide.verdicts import decide

        s = self.session.settings
        image = result.image_base
        resolution = [image.height, image.width] if image else None
        fingerprint = self._fingerprint(self.plan(result.ratio, result.method), resolution)
        if s.save_baselines:
            return self._save(result, fingerprint)
        with self._failing(result):
            baseline = self._load(result, fingerprint)
        decision = decide(
            result,
            baseline,
            self.tolerances,
            quality_applies=self.spec.quality_gated,
            looks=self.looks(self.plan(result.ratio, result.method)),
        )
        result = self.record(
            replace(
                result, verdict=decision.verdict, reasons=decision.reasons, checks=decision.checks
            )
        )
        if decision.verdict == INCONCLUSIVE:
            self._inconclusive(result, decision.table, len(baseline.time_tome))
        if decision.verdict == "fail":
            pytest.fail(
                f"{_METHOD_NAMES[result.method]} gate failed for {self.spec.name} at ratio "
                f"{result.ratio:g} on "
                f"{result.device}:\n{decision.table}",
                pytrace=False,
            )
        return result

    def _save(self, result: RatioResult, fingerprint: dict[str, Any]) -> RatioResult:
        """Store the measurement unless its own verdict fails (a short interval: a warning)."""
        __tracebackhide__ = True
        from pytest_tome.gate.decide.admission import save_problems, short_interval
        from pytest_tome.gate.decide.verdicts import decide
        from pytest_tome.gate.store.baselines import BaselineEntry, save_entries

        decision = decide(result, None, self.tolerances, quality_applies=self.spec.quality_gated)
        problems = save_problems(decision)
        result = replace(result, verdict=FAIL if problems else NEW, reasons=decision.reasons,
                         checks=decision.checks)  # fmt: skip
        if problems:
            self.record(result)
            pytest.fail(
                f"baseline not saved for {self.spec.name} at ratio {result.ratio:g} on "
                f"{result.device}: a saving run stores only measurements that pass their own "
                "checks.\n" + "\n".join(problems) + f"\n{decision.table}",
                pytrace=False,
            )
        if warning := short_interval(result):
            self.session.notes.append(f"WARNING: {warning}")
        entry = BaselineEntry(result, fingerprint)
        with self._failing(result):
            outcome = save_entries(self.session.settings.baselines, result.device, self.spec.key,
                                   [entry])  # fmt: skip
        if outcome.message:
            self.session.notes.append(outcome.message)
        return self.record(result)

    def _inconclusive(self, result: RatioResult, table: str, baseline_rounds: int) -> None:
        """Too noisy to decide: fail with what to do, or (--tome-inconclusive=warn) note it."""
        __tracebackhide__ = True
        from pytest_tome.gate.decide.advice import inconclusive_advice

        s = self.session.settings
        text = (
            f"ToMe gate inconclusive for {self.spec.name} at ratio {result.ratio:g} on "
            f"{result.device}: too noisy to tell a pass from a fail after "
            f"{len(result.time_tome)} rounds (threads={s.threads or 'auto'}).\n{table}\n"
            + inconclusive_advice(s.threads, baseline_rounds)
        )
        if s.inconclusive == "fail":
            pytest.fail(text, pytrace=False)
        self.session.notes.append(f"WARNING: {text.splitlines()[0]}")

    @contextmanager
    def _failing(self, result: RatioResult) -> Iterator[None]:
        """A baseline problem fails the test with its message and is recorded for the report."""
        __tracebackhide__ = True
        from pytest_tome.gate.store.baselines import BaselineError, problem_of

        try:
            yield
        except BaselineError as exc:
            why = (str(exc).splitlines()[0],)
            checks = (*result.checks, ("baseline", problem_of(exc)))
            self.record(replace(result, verdict="fail", reasons=why, checks=checks))
            raise pytest.fail.Exception(str(exc), pytrace=False) from None

    def _fingerprint(self, plan: RunPlan, resolution: list[int] | None) -> dict[str, Any]:
        import torch

        from pytest_tome.gate.store.fingerprints import plan_fingerprint

        tome = {**tome_args(plan.ratio, plan.method), "method": plan.method}
        return plan_fingerprint(plan, torch.get_num_threads(), resolution=resolution, tome=tome)

    def device_key(self) -> str:
        import torch

        from pytest_tome.gate.store.baselines import device_key_of

        return device_key_of(torch.device(self.session.settings.device))

    def record(self, result: RatioResult) -> RatioResult:
        self.session.results.append(result)
        return result


def _json_float(value: float | None) -> float | str | None:
    from pytest_tome.gate.results import float_to_json

    return float_to_json(value)
