#!/usr/bin/env bash
# The GPU path of pytest-tome in one run, for a CUDA machine that reaches no package index.
#
#   make gpu-wheels                      # here, with network: fills .gpu-wheels/
#   bash scripts/gpu_check.sh            # there (make gpu-check): < 8 minutes on one GPU
#   bash scripts/gpu_check.sh --dry-run  # anywhere: the same steps, tiny, on the CPU
#   bash scripts/gpu_check.sh --print    # only print the commands it would run
#
# Steps: install diffusers, tomesd and this project from .gpu-wheels/ into the machine's own
# python3 (no venv: its CUDA torch stays), run the CUDA tests, run the gate in float16 on the
# embedded pipelines, then on the arch: presets, saving baselines/cuda-<gpu>/ and
# report-gpu/{embedded,arch}/, print a summary, and copy what must come back into $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --print) MODE=print ;;
  "") ;;
  *) echo "usage: $0 [--dry-run | --print]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.gpu-wheels}
# Override with GPU_CHECK_ARCH=... (comma-separated arch: presets; empty to skip them).
ARCH=${GPU_CHECK_ARCH-arch:ddpm-celebahq-256,arch:ldm-celebahq-256,arch:sd15-512}
if [[ $MODE != dry ]]; then
  GATE_ARGS=(--tome-device=cuda --tome-dtype=float16 --tome-ratios=0.3,0.5)
  BASELINES=baselines
  REPORT=report-gpu
  INSTALL_S=90 TESTS_S=60 EMBEDDED_S=90 ARCH_S=210  # with nvidia-smi: < 8 minutes in all
else  # the same commands on the CPU, as small as the gate allows
  GATE_ARGS=(--tome-device=cpu --tome-dtype=float32 --tome-ratios=0.5 --tome-rounds=2
    --tome-max-rounds=2 --tome-warmup=0 --tome-steps=2)
  ARCH=""
  SCRATCH=$(mktemp -d)
  BASELINES=$SCRATCH/baselines
  REPORT=$SCRATCH/report-gpu
  INSTALL_S=60 TESTS_S=120 EMBEDDED_S=300 ARCH_S=0
fi
GATE_ARGS+=(--tome-save-baselines "--tome-baselines=$BASELINES")
PYTEST=("$PYTHON" -m pytest -p no:cacheprovider -p no:randomly)
started=$SECONDS

step() {  # step NAME SECONDS COMMAND...: print it, run it under a time budget
  local name=$1 budget=$2
  shift 2
  echo "=== [gpu-check] $name (budget ${budget}s, at $((SECONDS - started))s): $*"
  if [[ $MODE == print ]]; then return 0; fi
  if [[ $(type -t "$1") == function ]]; then
    BUDGET=$budget "$@"
  else
    timeout --kill-after=15 "$budget" "$@"
  fi
}

install() {
  if [[ $MODE == dry ]]; then
    echo "(dry run: using the installed packages)"
    return 0
  fi
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS: run 'make gpu-wheels' on a machine with network first" >&2
    return 1
  fi
  "$PYTHON" -m pip --version
  # Into this python3 as it is (no venv: its CUDA torch stays): a plain install where that is
  # allowed (a venv, conda, a container's root), else --user, else past PEP 668's marker.
  local how=() pip
  for how in "" "--user" "--break-system-packages"; do
    pip=(timeout "$BUDGET" "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $how)
    # Dependencies from the wheels folder or what is installed; where a pin cannot be met
    # offline (e.g. an older safetensors), without them, and the import check below judges.
    if "${pip[@]}" diffusers tomesd pytest-tome "filelock>=3.12"; then
      break
    fi
    echo "pip install ${how:-(plain)} failed; retrying without dependencies" >&2
    if "${pip[@]}" --no-deps "$WHEELS"/diffusers-*.whl "$WHEELS"/tomesd-*.whl \
      "$WHEELS"/pytest_tome-*.whl "$WHEELS"/filelock-*.whl; then
      break
    fi
  done
  "$PYTHON" - <<'PY'
import diffusers, tomesd, torch, pytest_tome, filelock  # noqa: F401
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()} diffusers {diffusers.__version__}")
assert torch.cuda.is_available(), "this python3's torch sees no CUDA device"
PY
}

summary() {
  echo "=== [gpu-check] summary after $((SECONDS - started))s"
  if [[ $MODE == print ]]; then return 0; fi
  for md in "$REPORT"/*/report.md; do
    [[ -f $md ]] && sed -n '1,40p' "$md"
  done
  find "$BASELINES" -path '*cuda-*' -name '*.json' -newer "$0" 2>/dev/null | sort || true
  if [[ $MODE == gpu && -n ${OUT:-} ]]; then
    # The device tool brings back at most 8 files: one archive and the two reports.
    tar -czf "$OUT/gpu-check.tar.gz" "$REPORT" baselines/cuda-* 2>/dev/null || true
    for part in embedded arch; do
      cp "$REPORT/$part/report.md" "$OUT/report-$part.md" 2>/dev/null || true
    done
    echo "copied into $OUT: $(ls "$OUT" | tr '\n' ' ')"
  fi
}

status=0
step "nvidia-smi" 20 bash -c 'nvidia-smi -L || echo "(no nvidia-smi)"' || true
step "install from $WHEELS" "$INSTALL_S" install || status=$?
if [[ $status -eq 0 ]]; then
  # The tests that take the CUDA branches (they skip or take the CPU branch elsewhere).
  step "CUDA tests" "$TESTS_S" "${PYTEST[@]}" -q -k cuda tests || status=$?
  # Two runs, so a slow preset cannot cost the embedded pipelines' report: baselines are
  # saved test by test, a report when its run ends.
  step "gate, embedded pipelines" "$EMBEDDED_S" "${PYTEST[@]}" tests/test_gate.py \
    "${GATE_ARGS[@]}" "--tome-report=$REPORT/embedded" || status=$?
  if [[ -n $ARCH ]]; then
    step "gate, arch: presets" "$ARCH_S" "${PYTEST[@]}" tests/test_gate.py "${GATE_ARGS[@]}" \
      "--tome-models=$ARCH" "--tome-report=$REPORT/arch" || status=$?
  fi
fi
summary
echo "=== [gpu-check] done in $((SECONDS - started))s, exit status $status"
exit "$status"
