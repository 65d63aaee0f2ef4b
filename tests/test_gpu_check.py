"""scripts/gpu_check.sh in its GPU mode, with a stand-in python3 that logs what it is asked.

No GPU is needed: the stand-in refuses a plain `pip install` (as PEP 668 would), accepts
`--user`, and answers every pytest run with success, so the test sees the install fallback,
the order of the steps and their arguments, and what is copied into $OUT.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "{log}"
case "$*" in
  "-m pip install"*--user*) exit 0 ;;
  "-m pip install"*) exit 1 ;;
esac
if [[ "$*" == *"--tome-report="* ]]; then  # a gate run writes its report
  report=$(printf '%s\\n' "$@" | sed -n 's/^--tome-report=//p')
  mkdir -p "$report" && echo "# report $report" > "$report/report.md"
fi
exit 0
"""


def _run(tmp_path: Path, wheels: bool = True) -> tuple[subprocess.CompletedProcess[str], list]:
    log = tmp_path / "calls.log"
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON.format(log=log))
    fake.chmod(0o755)
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in ("diffusers-0.42.1", "tomesd-0.1.3", "pytest_tome-0.1.0", "filelock-4.3.1"):
        if wheels:
            (folder / f"{name}-py3-none-any.whl").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHON": str(fake), "GPU_WHEELS": str(folder), "OUT": str(out)}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    script = tmp_path / "scripts" / "gpu_check.sh"  # a copy: it works in the folder above it
    script.parent.mkdir()
    script.write_text((ROOT / "scripts" / "gpu_check.sh").read_text())
    done = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done, log.read_text().splitlines() if log.exists() else []


def test_gpu_mode_falls_back_to_a_user_install_then_runs_every_step(tmp_path) -> None:
    done, calls = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    installs = [c for c in calls if c.startswith("-m pip install")]
    assert "--user" not in installs[0] and "--no-index" in installs[0]
    assert "--user" in installs[-1] and "--find-links" in installs[-1]
    pytest_runs = [c for c in calls if c.startswith("-m pytest")]
    assert len(pytest_runs) == 3
    assert "-k cuda tests" in pytest_runs[0]
    assert "--tome-dtype=float16" in pytest_runs[1] and "report-gpu/embedded" in pytest_runs[1]
    assert "--tome-models=arch:" in pytest_runs[2] and "report-gpu/arch" in pytest_runs[2]
    assert "=== [gpu-check] done in" in done.stdout
    assert "# report report-gpu/embedded" in done.stdout  # the summary prints the reports
    copied = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert copied == ["gpu-check.tar.gz", "report-arch.md", "report-embedded.md"]
    assert (tmp_path / "report-gpu" / "arch" / "report.md").exists()  # in its own folder


def test_without_wheels_it_stops_before_any_test(tmp_path) -> None:
    done, calls = _run(tmp_path, wheels=False)
    assert done.returncode != 0
    assert "run 'make gpu-wheels'" in done.stderr
    assert not [c for c in calls if c.startswith("-m pytest")]
