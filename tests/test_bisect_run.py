"""`git bisect run` with the README's recipe names the commit that slowed the merged path.

A real repository of a tiny user package over six commits: the package hooks the UNet of the
pipeline it is tested with (tiny-ldm, built offline) and, from the fourth commit on, spins
twice a forward's CPU time after every forward that ToMe merged (the merged UNet 3x slower;
unmerged forwards untouched). The baseline is saved at the first commit, outside the
repository, and `git bisect run pytest ... --tome-bisect` must end at the fourth.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_tome

pytestmark = pytest.mark.slow

PACKAGE = '''"""tinyuser: a feature cache, refreshed after each UNet forward that ToMe merged."""

import time

from pytest_tome.engine import model_of, patch_of

# CPU time spent refreshing, as a share of the forward's own.
REFRESH_COST = {cost}


def install(pipe):
    """Hook the pipeline's UNet; returns the hook handles."""
    unet = model_of(pipe)
    started = []

    def before(module, args):
        started.append(time.thread_time())

    def after(module, args, output):
        spent = time.thread_time() - started.pop()
        if patch_of(pipe) is not None:
            end = time.thread_time() + REFRESH_COST * spent
            while time.thread_time() < end:
                pass

    return [unet.register_forward_pre_hook(before), unet.register_forward_hook(after)]
'''
CONFTEST = """
import pytest

import tinyuser


@pytest.fixture(autouse=True)
def _tinyuser_hooks(tome_pipeline):
    handles = tinyuser.install(tome_pipeline)
    yield
    for handle in handles:
        handle.remove()
"""
GATE_TEST = """
def test_tome_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
"""
# A generous tolerance for a noisy machine: the planted 3x costs far more than half the speedup.
PYTEST_INI = """
[pytest]
addopts = -p no:randomly -p no:cacheprovider
tome_models = tiny-ldm
tome_ratios = 0.3,0.5
tome_steps = 2
tome_rounds = 6
tome_tol_speed = 50%
"""
# (message, files): the fourth commit plants the slowdown.
COMMITS = [
    (
        "tinyuser: a feature cache on the UNet",
        {
            "tinyuser/__init__.py": "from tinyuser.cache import install  # noqa: F401\n",
            "tinyuser/cache.py": PACKAGE.format(cost=0.0),
            "tests/conftest.py": CONFTEST,
            "tests/test_gate.py": GATE_TEST,
            "pytest.ini": PYTEST_INI,
        },
    ),
    ("docs: a README", {"README.md": "# tinyuser\n"}),
    (
        "tinyuser: a version",
        {"tinyuser/__init__.py": '__version__ = "0.2"\nfrom tinyuser.cache import install\n'},
    ),
    ("tinyuser: refresh the cache in full", {"tinyuser/cache.py": PACKAGE.format(cost=2.0)}),
    ("docs: a changelog", {"CHANGES.md": "- the cache is refreshed in full\n"}),
    ("tests: a comment", {"tests/test_gate.py": "# the gate, at the default ratios\n" + GATE_TEST}),
]


def _git(repo: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _environment() -> dict[str, str]:
    """git with a fixed identity and no user config; pytest_tome from where this test has it."""
    here = str(Path(pytest_tome.__file__).resolve().parents[1])
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }


def _build(repo: Path, env: dict[str, str]) -> list[str]:
    """The commits of COMMITS, oldest first, as shas."""
    _git(repo, "init", "-q", "-b", "main", env=env)
    shas = []
    for message, files in COMMITS:
        for name, text in files.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
        _git(repo, "add", "-A", env=env)
        _git(repo, "commit", "-q", "-m", message, env=env)
        shas.append(_git(repo, "rev-parse", "HEAD", env=env).strip())
    return shas


def test_git_bisect_run_names_the_commit_that_slowed_the_merged_path(tmp_path: Path) -> None:
    env = _environment()
    repo, baselines = tmp_path / "tinyuser", tmp_path / "baselines"
    repo.mkdir()
    shas = _build(repo, env)
    pytest_cmd = [sys.executable, "-m", "pytest", "tests/test_gate.py", "-k", "r0.5"]
    where = f"--tome-baselines={baselines}"  # outside the repository: checkouts leave it alone

    _git(repo, "checkout", "-q", shas[0], env=env)
    saved = subprocess.run(
        [*pytest_cmd, where, "--tome-save-baselines"], cwd=repo, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-3000:]

    _git(repo, "bisect", "start", shas[-1], shas[0], env=env)
    bisect = subprocess.run(
        ["git", "bisect", "run", *pytest_cmd, where, "--tome-bisect"], cwd=repo, env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"^([0-9a-f]{40}) is the first bad commit", bisect.stdout, re.MULTILINE)
    print("\n".join(f"{sha} {message}" for sha, (message, _) in zip(shas, COMMITS)))
    steps = re.compile(r"^\[[0-9a-f]{40}\]|^Bisecting|--tome-bisect: exit|first bad commit$")
    print("\n".join(line for line in bisect.stdout.splitlines() if steps.search(line)))
    assert found is not None, bisect.stdout[-5000:] + bisect.stderr[-2000:]
    assert found.group(1) == shas[3], f"bisect named {found.group(1)}, the plant is {shas[3]}"
