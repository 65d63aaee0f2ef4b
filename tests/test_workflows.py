"""The CI workflows and tox.ini: they parse, hold the jobs they promise, and every pytest
option they pass exists (a renamed option would otherwise only fail on the GPU runner).

Convention the option check relies on: a workflow step that runs pytest runs nothing else
that takes `--long-options` (installs and downloads are steps of their own).
"""

from __future__ import annotations

import configparser
import re
import shutil
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


def test_ci_runs_the_readme_commands_with_cpu_torch(ci):
    job = ci["jobs"]["test"]
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"
    scripts = [s.get("run", "") for s in job["steps"]]
    cpu = "TORCH_INDEX=https://download.pytorch.org/whl/cpu"
    commands = [f"make {target} {cpu}" for target in ("test", "bench", "gate")]
    assert [scripts.index(command) for command in commands] == sorted(
        scripts.index(command) for command in commands
    )


def test_make_installs_torch_first_then_the_project_and_runs_the_three_commands():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch = makefile.index(
        'pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"'
    )
    assert torch < makefile.index('pip install --quiet -e ".[test,lint]" -c constraints.txt')
    assert "TORCH ?= torch==2.13.0" in makefile
    assert "$(STAMP): pyproject.toml constraints.txt" in makefile
    assert "gate: $(STAMP)\n\t$(PY) -m pytest tests/test_gate.py --tome-ratios=0.3,0.5 " in makefile
    assert (
        'test: $(STAMP)\n\t$(PY) -m pytest -m "not bench and not gate" --durations=10\n' in makefile
    )
    assert "bench: $(STAMP)\n\t$(PY) -m pytest -m bench\n" in makefile
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().splitlines()
    assert run[-3:] == ["make test", "make bench", "make gate"]


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
        "--benchmark-storage=file://.benchmarks",
        "--numprocesses=",
        "--tome-save-baselines",
    ):
        assert option in script
    # Information only: the gate's paired verdict decides, not pytest-benchmark's medians.
    assert "--benchmark-compare-fail" not in script  # nor in its comments
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


@pytest.mark.parametrize("name", ["gpu-gate.yml"])  # ci.yml runs make: see the Makefile test
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
    assert envs == ["py310", "py311", "py312", "bench-floor", "gate", "lint"]
    base = tox["testenv"]
    assert base["extras"].strip() == "test"
    deps = base["deps"].split()
    assert deps == ["{env:TORCH_PIP_OPTIONS:}", "torch==2.13.0"]  # the default index unless set
    assert "python -m pytest" in base["commands"]
    assert (
        "tests/test_gate.py --tome-ratios=0.3,0.5 --tome-report={toxinidir}/report"
        in (tox["testenv:gate"]["commands"])
    )
    lint = tox["testenv:lint"]["commands"]
    assert "ruff check pytest_tome tests conftest.py" in lint
    assert "ruff format --check pytest_tome tests conftest.py" in lint
    assert "zizmor --offline .github/workflows" in lint
    assert "check-jsonschema --builtin-schema vendor.github-workflows" in lint


def test_every_pytest_option_in_the_makefile_and_gpu_script_exists(help_text):
    texts = [
        (ROOT / name).read_text(encoding="utf-8") for name in ("Makefile", "scripts/gpu_check.sh")
    ]
    used = {opt for text in texts for opt in LONG_OPTION.findall(text) if opt.startswith("tome-")}
    assert {"tome-report", "tome-save-baselines", "tome-dtype"} <= used
    unknown = sorted(opt for opt in used if not accepted(opt, help_text))
    assert not unknown, f"options pytest does not know: {unknown}"


def _tool(name: str) -> str:
    """The linter next to this interpreter (the venv's), else on PATH; skip when absent."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[lint]')")
    return found


def test_zizmor_finds_nothing_in_the_workflows():
    done = subprocess.run(
        [_tool("zizmor"), "--offline", str(WORKFLOWS)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr


def test_the_workflows_match_githubs_schema():
    done = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["ci.yml", "gpu-gate.yml"])
def test_actions_are_pinned_to_commits_and_checkouts_keep_no_credentials(name):
    for step in steps(load(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
        if step.get("uses", "").startswith("actions/checkout"):
            assert step["with"]["persist-credentials"] is False


def test_the_gpu_script_parses_and_prints_its_gpu_commands():
    script = str(ROOT / "scripts" / "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script], check=False).returncode == 0
    done = subprocess.run(
        ["bash", script, "--print"], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    embedded, arch = [line for line in done.stdout.splitlines() if "tests/test_gate.py" in line]
    for gate in (embedded, arch):
        for option in ("--tome-device=cuda", "--tome-dtype=float16", "--tome-save-baselines",
                       "--tome-baselines=baselines"):  # fmt: skip
            assert option in gate
    assert "--tome-models" not in embedded and "--tome-report=report-gpu/embedded" in embedded
    assert "--tome-models=arch:ddpm-celebahq-256," in arch and "arch:sd15-512" in arch
    assert "--tome-report=report-gpu/arch" in arch


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
