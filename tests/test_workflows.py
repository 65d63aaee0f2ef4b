"""The CI workflows and tox.ini: they parse, hold the jobs they promise, and every pytest
option they pass exists (a renamed option would otherwise only fail on the GPU runner).

Convention the option check relies on: a workflow step that runs pytest runs nothing else
that takes `--long-options` (installs and downloads are steps of their own).
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml comes with the test extra")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
REAL_MODELS = (
    "google/ddpm-celebahq-256",
    "CompVis/ldm-celebahq-256",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
)
LONG_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
RUNS_PYTEST = re.compile(r"(?<![\w-])pytest(?![\w.-])")  # not pytest_tome, not pytest-xdist


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def pytest_steps(workflow: dict[str, Any]) -> list[str]:
    """The text of each step that runs pytest: its script and its env values."""
    texts = []
    for step in steps(workflow):
        if RUNS_PYTEST.search(step.get("run", "")):
            env = " ".join(str(v) for v in step.get("env", {}).values())
            texts.append(f"{step['run']}\n{env}")
    return texts


@pytest.fixture(scope="module")
def help_text() -> str:
    """`pytest --help` with pytest-tome loaded, before or after `pip install -e .`."""
    installed = any(
        ep.value == "pytest_tome.plugin" for ep in metadata.entry_points(group="pytest11")
    )
    args = [sys.executable, "-m", "pytest", "--help"]
    if not installed:
        args[3:3] = ["-p", "pytest_tome.plugin"]
    done = subprocess.run(args, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def accepted(option: str, help_text: str) -> bool:
    return re.search(rf"(?<![\w-])--{re.escape(option)}(?![\w-])", help_text) is not None


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load("ci.yml")


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    return load("gpu-gate.yml")


def test_ci_runs_on_push_and_pull_request(ci):
    assert {"push", "pull_request"} <= set(ci["on"])


def test_ci_installs_cpu_torch_then_the_test_extra_and_runs_tests_and_gate(ci):
    job = ci["jobs"]["test"]
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"
    scripts = [s.get("run", "") for s in job["steps"]]
    install = next(s for s in scripts if "pip install" in s)
    cpu_torch = (
        "python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    )
    assert install.index(cpu_torch) < install.index('python -m pip install -e ".[test]"')
    assert "python -m pytest -q" in scripts
    assert (
        "python -m pytest tests/test_gate.py --tome-ratios=0.3,0.5 --tome-report=report" in scripts
    )


def test_ci_uploads_the_report_even_when_the_gate_fails(ci):
    upload = next(s for s in steps(ci) if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "report"


def test_gpu_gate_runs_on_a_matrix_of_self_hosted_gpu_runners(gpu):
    job = gpu["jobs"]["gate"]
    assert job["runs-on"] == "${{ matrix.runner }}"
    runners = [entry["runner"] for entry in job["strategy"]["matrix"]["include"]]
    assert len(runners) >= 2
    assert all({"self-hosted", "gpu"} <= set(labels) for labels in runners)
    assert len({tuple(labels) for labels in runners}) == len(runners)


def test_gpu_gate_keeps_the_hf_cache_and_downloads_before_going_offline(gpu):
    job_steps = steps(gpu)
    scripts = [s.get("run", "") for s in job_steps]
    keep = next(i for i, s in enumerate(scripts) if "HF_HOME=" in s and "GITHUB_ENV" in s)
    download = next(i for i, s in enumerate(scripts) if "hf download" in s)
    gate = next(i for i, s in enumerate(scripts) if "python -m pytest" in s)
    assert keep < download < gate
    assert all(f"hf download {model}" in scripts[download] for model in REAL_MODELS)
    assert job_steps[gate]["env"]["HF_HUB_OFFLINE"] == "1"
    assert set(gpu["env"]["MODELS"].split(",")) == set(REAL_MODELS)


def test_gpu_gate_runs_the_real_models_in_float16_with_benchmark_history(gpu):
    (script,) = pytest_steps(gpu)
    for option in (
        "--tome-models=",
        "--tome-device=cuda",
        "--tome-dtype=float16",
        "--tome-ratios=0.3,0.5",
        "--tome-baselines=baselines",
        "--tome-report=report",
        "--benchmark-autosave",
        "--benchmark-compare",
        "--benchmark-compare-fail=median:10%",
        "--benchmark-storage=file://.benchmarks",
        "--numprocesses=",
        "--tome-save-baselines",
    ):
        assert option in script
    caches = [s for s in steps(gpu) if s.get("uses", "").startswith("actions/cache")]
    assert {s["with"]["path"] for s in caches} == {".benchmarks"}
    assert {s["uses"].split("@")[0] for s in caches} == {
        "actions/cache/restore",
        "actions/cache/save",
    }


def test_gpu_gate_can_be_run_by_hand_to_save_baselines(gpu):
    inputs = gpu["on"]["workflow_dispatch"]["inputs"]
    assert inputs["save_baselines"]["type"] == "boolean"
    uploads = [s for s in steps(gpu) if s.get("uses", "").startswith("actions/upload-artifact")]
    assert {s["with"]["path"].rstrip("/") for s in uploads} == {"report", "baselines"}


@pytest.mark.parametrize("name", ["ci.yml", "gpu-gate.yml"])
def test_every_pytest_option_in_a_workflow_exists(name, help_text):
    used = {opt for text in pytest_steps(load(name)) for opt in LONG_OPTION.findall(text)}
    assert used, f"{name} runs no pytest with options"
    unknown = sorted(opt for opt in used if not accepted(opt, help_text))
    assert not unknown, f"{name} passes options pytest does not know: {unknown}"


def read_tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini", encoding="utf-8")
    return parser


def test_tox_lists_the_envs_and_installs_cpu_torch():
    tox = read_tox()
    envs = [env.strip() for env in tox["tox"]["envlist"].split(",")]
    assert envs == ["py310", "py311", "py312", "gate", "lint"]
    base = tox["testenv"]
    assert base["extras"].strip() == "test"
    deps = base["deps"].split()
    assert "torch==2.13.0" in deps
    assert any("download.pytorch.org/whl/cpu" in dep for dep in deps)
    assert "python -m pytest" in base["commands"]
    assert (
        "tests/test_gate.py --tome-ratios=0.3,0.5 --tome-report={toxinidir}/report"
        in (tox["testenv:gate"]["commands"])
    )
    lint = tox["testenv:lint"]["commands"]
    assert "ruff check pytest_tome tests conftest.py" in lint
    assert "ruff format --check pytest_tome tests conftest.py" in lint


def test_every_pytest_option_in_tox_exists(help_text):
    tox = read_tox()
    lines = [
        line
        for section in tox.sections()
        for line in tox[section].get("commands", "").splitlines()
        if RUNS_PYTEST.search(line)
    ]
    used = {opt for line in lines for opt in LONG_OPTION.findall(line)}
    assert "tome-report" in used
    unknown = sorted(opt for opt in used if not accepted(opt, help_text))
    assert not unknown, f"tox.ini passes options pytest does not know: {unknown}"


def test_the_option_check_can_fail(help_text):
    assert accepted("tome-ratios", help_text)
    assert not accepted("tome-ratio", help_text)
    assert not accepted("tome-no-such-option", help_text)
