"""The gate's whole baseline cycle through pytester: fail -> save -> pass -> regress -> fail.

Runs on tiny-ldm with 2 steps (about 0.1 s a call), so each inner session takes seconds.
Regressions are planted by a test-only conftest that wraps the merged path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_tome.settings import TomeSettings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GATE_TEST = """
import pytest

def test_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# tiny-ldm's 0.1-s calls scatter by 10% a round on a shared 2-core machine: a 25% speed
# tolerance keeps unchanged reruns decidable, and the planted 50% slowdown still fails it.
FAST = (
    "--tome-models=tiny-ldm",
    "--tome-steps=3",
    "--tome-rounds=8",
    "--tome-warmup=1",
    "--tome-tol-speed=25%",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
)
# For runs whose speed verdict is not what a test checks (files, messages, usage errors, a
# quality loss, a baseline saved to be read): two rounds, never more, and no warm-up.
QUICK = ("--tome-rounds=2", "--tome-max-rounds=2", "--tome-warmup=0")

# Wraps the merged pipeline call (the gate applies ToMe around it, so a patch is present):
# sleeps for 40% of its own CPU time (a merged path that waits), spins for half of
# its own CPU time (a 50% slowdown of the merged path; the 25% case is measured
# on the full gate, see the README), adds noise to the merged images (a quality loss), or
# replaces every attention processor as user code might after apply_tome (a run-time no-op).
# Unmerged calls are never touched. Inner runs of tiny-ldm take ~0.1 s a call, where a few ms
# of jitter are a large share: the bigger plant keeps the test from flaking.
PLANT = """
import time
import numpy as np
import pytest
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
import pytest_tome.gate.measure.pipeline_calls as runs
from pytest_tome.engine import patch_of

_run = runs.run_pipeline

def slow_run(pipe, **kwargs):  # busy work, as a real slowdown: it costs CPU time too
    start = time.thread_time()
    images = _run(pipe, **kwargs)
    if patch_of(pipe) is not None:
        end = time.thread_time() + 0.5 * (time.thread_time() - start)
        while time.thread_time() < end:
            pass
    return images

def sleepy_run(pipe, **kwargs):  # waits, as a lock or I/O would: wall time, no CPU time
    start = time.thread_time()
    images = _run(pipe, **kwargs)
    if patch_of(pipe) is not None:  # 40% of the merged call, asleep
        time.sleep(0.4 * (time.thread_time() - start))
    return images

def noisy_run(pipe, **kwargs):
    images = _run(pipe, **kwargs)
    if patch_of(pipe) is not None:
        noise = np.random.default_rng(0).normal(0, 0.1, images.shape).astype(images.dtype)
        images = np.clip(images + noise, 0, 1)
    return images

def replaced_run(pipe, **kwargs):
    if patch_of(pipe) is not None:
        for module in pipe.unet.modules():
            if isinstance(module, Attention):
                module.set_processor(AttnProcessor2_0())
    return _run(pipe, **kwargs)

@pytest.fixture(autouse=True)
def plant(monkeypatch):
    monkeypatch.setattr(runs, "run_pipeline", {plant}_run)
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*FAST, "--tome-baselines=baselines", *args)


def _baseline(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "baselines" / "cpu" / "tiny-ldm.json").read_text())


def test_missing_save_pass_then_slowdown_and_quality_loss_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)

    missing = _run(pytester, "--tome-ratios=0.5", *QUICK)
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(
        [
            "*no baseline for tiny-ldm at ratio 0.5 on cpu*",
            "*create it with: pytest *--tome-save-baselines*",
        ]
    )

    saved = _run(pytester, "--tome-ratios=0.3,0.5", "--tome-save-baselines")
    saved.assert_outcomes(passed=2)
    entries = _baseline(pytester)["entries"]
    assert sorted(entries) == ["0.3", "0.5"]
    # 8 rounds, plus more (up to --tome-max-rounds) while the saving run's own interval is
    # wider than the tolerance: how many depends on the machine's noise.
    most = TomeSettings().max_rounds
    assert 8 <= len(entries["0.5"]["time_tome"]) <= most and entries["0.5"]["psnr"] > 20

    again = _run(pytester, "--tome-ratios=0.3,0.5")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*pytest-tome*", "tiny-ldm (cpu*", "*0.3*pass", "*0.5*pass"])

    pytester.makeconftest(PLANT.format(plant="slow"))
    slow = _run(pytester, "--tome-ratios=0.5")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(
        [
            "*ToMe gate failed for tiny-ldm at ratio 0.5 on cpu*",
            "*metric*measured*baseline*tolerance*",
            "*speedup*fail*",
        ]
    )

    pytester.makeconftest(PLANT.format(plant="noisy"))
    noisy = _run(pytester, "--tome-ratios=0.5", *QUICK)
    noisy.assert_outcomes(failed=1)
    noisy.stdout.fnmatch_lines(["*PSNR*fail*"])


def test_a_merged_path_that_sleeps_fails_saying_it_waits(pytester: pytest.Pytester) -> None:
    """The thread's CPU clock cannot see a sleep; the wall clock of the same calls can."""
    pytester.makepyfile(test_user_gate=GATE_TEST)
    _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines").assert_outcomes(passed=1)
    pytester.makeconftest(PLANT.format(plant="sleepy"))
    slept = _run(pytester, "--tome-ratios=0.5", "--tome-rounds=12")
    slept.assert_outcomes(failed=1)
    slept.stdout.fnmatch_lines(["*speedup*fail*the merged path waits * ms per image*"])


def test_tolerance_marker_overrides_and_is_validated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines", *QUICK).assert_outcomes(passed=1)
    pytester.makeconftest(PLANT.format(plant="noisy"))
    pytester.makepyfile(
        test_user_gate=GATE_TEST.replace(
            "def test_gate", '@pytest.mark.tome(psnr=100, ssim=1, speed="90%")\ndef test_gate'
        )
    )
    # The quality tolerances decide here; two rounds cannot decide the speed: warn, not fail.
    _run(pytester, "--tome-ratios=0.5", *QUICK, "--tome-inconclusive=warn").assert_outcomes(
        passed=1
    )

    pytester.makepyfile(
        test_user_gate=GATE_TEST.replace(
            "def test_gate", "@pytest.mark.tome(sharpness=2)\ndef test_gate"
        )
    )
    bad = _run(pytester, "--tome-ratios=0.5")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*@pytest.mark.tome: unknown tolerance 'sharpness'*valid: speed*"])


def test_fingerprint_mismatch_shows_both_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines", *QUICK).assert_outcomes(passed=1)
    result = _run(pytester, "--tome-ratios=0.5", "--tome-steps=2", *QUICK)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*measured with different settings*", "*steps: baseline 3, now 2*"]
    )


def test_corrupt_baseline_fails_naming_the_file_and_saving_moves_it_aside(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    (folder / "tiny-ldm.json").write_text('{"schema": 1, "entries": {"0.5": ')
    result = _run(pytester, "--tome-ratios=0.5", *QUICK)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tiny-ldm.json*"])
    assert (folder / "tiny-ldm.json").read_text().endswith('"0.5": ')  # untouched

    saved = _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines", *QUICK)
    saved.assert_outcomes(passed=1)
    saved.stdout.fnmatch_lines(["*tiny-ldm.json*corrupt*"])
    aside = list(folder.glob("tiny-ldm.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().endswith('"0.5": ')
    assert "0.5" in _baseline(pytester)["entries"]


def test_a_baselines_path_that_is_a_file_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    (pytester.path / "baselines").write_text("not a folder")
    for args in ((), ("--tome-save-baselines",)):
        result = _run(pytester, "--tome-ratios=0.5", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--tome-baselines:*baselines is a file; expected a folder*"])
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert (pytester.path / "baselines").read_text() == "not a folder"


def test_ratios_above_0_75_merge_in_larger_cells_and_beyond_4x4_are_not_mergeable(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = _run(
        pytester,
        "--tome-ratios=0.7,0.8,0.9,0.95",
        "--tome-save-baselines",
        *QUICK,
        "--tome-report=report",
        "-rs",
    )
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        ["*ratio 0.95 is not mergeable*above 0.9375, the most 4x4 cells allow*"]
    )
    report = json.loads((pytester.path / "report" / "report.json").read_text())
    verdicts = {r["ratio"]: r["verdict"] for r in report["results"]}
    assert verdicts == {0.7: "new", 0.8: "new", 0.9: "new", 0.95: "not mergeable"}
    entries = _baseline(pytester)["entries"]
    cells = {float(key): e["fingerprint"]["tome"]["sx"] for key, e in entries.items()}
    assert cells == {0.7: 2, 0.8: 3, 0.9: 4}
    markdown = (pytester.path / "report" / "report.md").read_text()
    assert "ratio 0.9: merged in 4x4 cells (2x2 allow at most 0.75)" in markdown
    assert "ratio 0.7: merged in" not in markdown
    for name in ("report.md", "speed.png", "quality.png", "images.png"):
        assert (pytester.path / "report" / name).stat().st_size > 0


def test_benchmark_json_carries_the_gate_figures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = _run(
        pytester,
        "--tome-ratios=0.5",
        "--tome-save-baselines",
        *QUICK,
        "--benchmark-json=bench.json",
    )
    result.assert_outcomes(passed=1)
    bench = json.loads(Path(pytester.path, "bench.json").read_text())["benchmarks"]
    assert len(bench) == 1 and len(bench[0]["stats"]["data"]) == 2  # the timed rounds
    info = bench[0]["extra_info"]
    assert info["model"] == "tiny-ldm" and info["ratio"] == 0.5
    assert info["speedup"] > 0 and info["psnr"] > 20 and 0 < info["ssim"] <= 1


def test_xdist_workers_lose_no_entry_and_the_summary_merges(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = pytester.runpytest_subprocess(
        *FAST,
        "--tome-baselines=baselines",
        "--tome-ratios=0.1,0.2,0.3,0.4",
        "--tome-save-baselines",
        *QUICK,
        "--tome-report=report",
        "-n",
        "2",
    )
    result.assert_outcomes(passed=4)
    assert sorted(_baseline(pytester)["entries"]) == ["0.1", "0.2", "0.3", "0.4"]
    result.stdout.fnmatch_lines(
        ["*pytest-tome*", "tiny-ldm (cpu*", "*0.1*new", "*0.2*new", "*0.3*new", "*0.4*new"]
    )
    report = json.loads((pytester.path / "report" / "report.json").read_text())
    assert sorted(r["ratio"] for r in report["results"]) == [0.1, 0.2, 0.3, 0.4]
    assert [h["model"] for h in report["headroom"]] == ["tiny-ldm"]


def test_progress_shows_in_verbose_runs_and_never_in_quiet_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    args = ("--tome-ratios=0.5", "--tome-save-baselines", *QUICK)
    verbose = _run(pytester, *args, "-v")
    verbose.stdout.fnmatch_lines(
        [
            "[[]tome[]] tiny-ldm: timing the layers ToMe merges (headroom)",
            "[[]tome[]] tiny-ldm r0.5: round 1/2 (*",
            "[[]tome[]] tiny-ldm r0.5: round 2/2 (*",
        ]
    )
    quiet = _run(pytester, *args, "-q")
    quiet.assert_outcomes(passed=1)
    assert "[tome]" not in quiet.stdout.str()


def test_step_summary_gets_the_tables(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(test_user_gate=GATE_TEST)
    _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines", *QUICK).assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("# pytest-tome report") and "## tiny-ldm" in text
    assert any(
        line.startswith("|") and "0.5" in line and "new" in line for line in text.splitlines()
    )


def test_a_report_path_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    (pytester.path / "taken").write_text("a file")
    result = _run(pytester, "--tome-ratios=0.5", "--tome-report=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tome-report:*taken*"])


def test_benchmark_autosave_then_compare_works_as_pytest_benchmark_users_expect(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    storage = "--benchmark-storage=file://bench"
    args = ("--tome-ratios=0.5", "--tome-save-baselines", "--tome-rounds=3", "--tome-max-rounds=3",
            "--tome-warmup=0")  # fmt: skip
    _run(pytester, *args, "--benchmark-autosave", storage).assert_outcomes(passed=1)
    assert len(list((pytester.path / "bench").rglob("*.json"))) == 1
    compared = _run(pytester, *args, storage, "--benchmark-compare",
                    "--benchmark-compare-fail=median:1000%")  # fmt: skip
    compared.assert_outcomes(passed=1)
    compared.stderr.fnmatch_lines(["Comparing against benchmarks from: *0001_*.json"])
    # one row per run, in order of speed, so either may come first
    compared.stdout.fnmatch_lines(["test_gate[[]tiny-ldm-r0.5[]] (0001_*"])
    compared.stdout.fnmatch_lines(["test_gate[[]tiny-ldm-r0.5[]] (NOW)*"])


@pytest.fixture
def busy_neighbour() -> Iterator[subprocess.Popen]:
    """One core kept busy by a plain Python loop (bounded, and killed after the test)."""
    loop = "import time\nt = time.time()\nwhile time.time() - t < 300: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", loop])
    try:
        yield neighbour
    finally:
        neighbour.kill()
        neighbour.wait()


@pytest.mark.slow
def test_beside_a_busy_neighbour_reruns_pass_and_slowdowns_and_no_ops_still_fail(
    pytester: pytest.Pytester, busy_neighbour: subprocess.Popen
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines").assert_outcomes(passed=1)
    assert _baseline(pytester)["entries"]["0.5"]["fingerprint"]["threads"] == 1
    for _ in range(2):
        again = _run(pytester, "--tome-ratios=0.5")
        again.assert_outcomes(passed=1)
        again.stdout.fnmatch_lines(["*0.5*pass"])
        assert "merged path waits" not in again.stdout.str()  # a neighbour stretches both

    pytester.makeconftest(PLANT.format(plant="slow"))
    _run(pytester, "--tome-ratios=0.5").stdout.fnmatch_lines(["*speedup*fail*"])

    pytester.makeconftest(PLANT.format(plant="replaced"))
    noop = _run(pytester, "--tome-ratios=0.5")
    noop.assert_outcomes(failed=1)
    stopped = "*merging stopped at run time: down_blocks.*attentions.0 passed every token on"
    noop.stdout.fnmatch_lines([stopped + " (processor replaced: now AttnProcessor2_0)*"])
    assert busy_neighbour.poll() is None, "the neighbour was busy all along"


def test_a_run_time_no_op_fails_naming_the_layers_and_saves_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    pytester.makeconftest(PLANT.format(plant="replaced"))
    result = _run(pytester, "--tome-ratios=0.5", "--tome-save-baselines", *QUICK)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ToMe gate failed for tiny-ldm at ratio 0.5*"])
    stopped = [line for line in result.stdout.lines if "merging stopped at run time" in line]
    assert any("down_blocks.0.attentions.0 passed every token on" in line for line in stopped)
    assert not (pytester.path / "baselines" / "cpu" / "tiny-ldm.json").exists()


def test_benchmark_skip_still_runs_and_saves_the_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    args = ("--tome-ratios=0.5", *QUICK, "--benchmark-skip")
    saved = _run(pytester, *args, "--tome-save-baselines")
    saved.assert_outcomes(passed=1)
    assert len(_baseline(pytester)["entries"]["0.5"]["time_tome"]) >= 2
    # The verdict against a 2-round baseline may be too noisy to decide: only that it ran counts.
    only = _run(pytester, *args[:-1], "--benchmark-only", "--tome-inconclusive=warn")
    only.assert_outcomes(passed=1)
    only.stdout.fnmatch_lines(["tiny-ldm (cpu; 3 patched layers)", "*0.5*ms*"])


def test_without_pytest_benchmark_the_gate_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    result = _run(pytester, "--tome-ratios=0.5", "-p", "no:benchmark")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-tome's gate (tome_gate) needs pytest-benchmark*"])
    assert "fixture 'benchmark' not found" not in result.stdout.str()


def test_a_test_too_noisy_to_decide_is_inconclusive_and_fails_or_warns(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    # Two rounds a side, never more: too few for the sign or the rank test to reach its level, so
    # neither a slowdown nor its absence can be shown, whatever the machine's noise.
    args = ("--tome-ratios=0.5", "--tome-rounds=2", "--tome-max-rounds=2")
    _run(pytester, *args, "--tome-save-baselines").assert_outcomes(passed=1)
    failed = _run(pytester, *args)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        ["*ToMe gate inconclusive for tiny-ldm at ratio 0.5*", "*--tome-max-rounds*"]
    )
    warned = _run(pytester, *args, "--tome-inconclusive=warn")
    warned.assert_outcomes(passed=1)
    warned.stdout.fnmatch_lines(["*0.5*inconclusive", "WARNING: ToMe gate inconclusive*"])


# A bug in the merge itself: unmerge writes every token's row one position off (the source
# tokens land beside where they came from). Random weights barely show such a bug; a model
# trained on faces must.
MERGE_BUG = """
import pytest
from pytest_tome.engine import matching

_unmerge = matching.TokenMerge.unmerge

def shifted_unmerge(self, x):
    return _unmerge(self, x).roll(1, dims=1)

@pytest.fixture(autouse=True)
def merge_bug(monkeypatch):
    monkeypatch.setattr(matching.TokenMerge, "unmerge", shifted_unmerge)
"""


def test_a_merge_bug_fails_the_quality_gate_of_the_face_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_gate=GATE_TEST)
    # Default quality tolerances; speed is not what this test is about.
    args = (
        "--tome-models=faces-ddpm",
        "--tome-ratios=0.5",
        "--tome-rounds=6",
        "--tome-warmup=1",
        "--tome-tol-speed=50%",
        "--tome-inconclusive=warn",
        "--tome-baselines=baselines",
        "-p",
        "no:randomly",
    )
    pytester.runpytest(*args, "--tome-save-baselines").assert_outcomes(passed=1)
    pytester.runpytest(*args).assert_outcomes(passed=1)

    pytester.makeconftest(MERGE_BUG)
    broken = pytester.runpytest(*args)
    broken.assert_outcomes(failed=1)
    broken.stdout.re_match_lines([r".*(PSNR|SSIM).*fail.*"])
