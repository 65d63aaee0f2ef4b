"""Baseline files: keys, round trips, merging, locking, corrupt files, fingerprints, folders."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from pathlib import Path

import pytest

from pytest_tome.gate.results import RatioResult
from pytest_tome.gate.store import baselines
from pytest_tome.gate.store.baselines import (
    BaselineEntry,
    BaselineError,
    BaselineFolderError,
    CorruptBaseline,
    FingerprintMismatch,
    MissingBaseline,
    baseline_path,
    device_key,
    device_key_of,
    load_entry,
    ratio_key,
    read_baselines,
    save_entries,
)
from pytest_tome.gate.store.fingerprints import compare_fingerprints, fingerprint

SAVE = "pytest --tome-save-baselines"
FP = fingerprint(steps=3, seed=0, versions={"torch": "2.13"})


def entry(ratio: float, model: str = "tiny-sd", **changes) -> BaselineEntry:
    result = RatioResult(
        model=model,
        ratio=ratio,
        device="cpu",
        time_base=(1.0, 1.1, 0.9),
        time_tome=(0.5, 0.6, 0.4),
        speedup=2.0,
        speedup_ci=(1.8, 2.2),
        memory_base=10,
        memory_tome=12,
        memory_base_samples=(10, 10, 11),
        memory_tome_samples=(12, 12, 13),
        memory_method="peak RSS growth",
        psnr=math.inf,
        ssim=1.0,
        patched_layers=4,
    )
    return BaselineEntry(RatioResult(**{**result.__dict__, **changes}), FP)


def load(folder: Path, ratio: float, model: str = "tiny-sd", fp: dict = FP) -> RatioResult:
    return load_entry(folder, "cpu", model, ratio, fingerprint=fp, save_command=SAVE)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("cpu",), "cpu"),
        (("cuda", "NVIDIA H200"), "cuda-nvidia-h200"),
        (("cuda", "NVIDIA GeForce RTX 4090"), "cuda-nvidia-geforce-rtx-4090"),
        (("mps", "Apple M2 (Max)"), "mps-apple-m2-max"),
    ],
)
def test_device_keys_are_lower_case_with_dashes(args, key):
    assert device_key(*args) == key


def test_device_key_of_a_cpu_device():
    import torch  # here, not at the top: the concurrency test's processes import this module

    assert device_key_of(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize(
    ("ratio", "key"), [(0, "0"), (0.3, "0.3"), (0.1 + 0.2, "0.3"), (0.5, "0.5")]
)
def test_ratio_keys_are_stable(ratio, key):
    assert ratio_key(ratio) == key


def test_save_then_load_gives_the_same_measurements(tmp_path):
    saved = entry(0.5)
    save_entries(tmp_path, "cpu", "tiny-sd", [saved])
    assert load(tmp_path, 0.5) == saved.result


def test_the_file_is_strict_json_in_the_documented_shape(tmp_path):
    path = save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5), entry(0.3)]).path
    assert path == baseline_path(tmp_path, "cpu", "tiny-sd") == tmp_path / "cpu" / "tiny-sd.json"

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)
    assert (data["schema"], data["device"], data["model"]) == (1, "cpu", "tiny-sd")
    assert list(data["entries"]) == ["0.3", "0.5"]
    stored = data["entries"]["0.5"]
    assert stored["psnr"] == "inf"
    assert stored["time_tome"] == [0.5, 0.6, 0.4]  # raw samples, not only a mean
    assert stored["fingerprint"] == FP


def test_saving_merges_with_what_the_file_holds(tmp_path):
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.3), entry(0.5)])
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5, psnr=20.0), entry(0.7)])
    save_entries(tmp_path, "cpu", "tiny-ldm", [entry(0.5, model="tiny-ldm")])
    assert sorted(read_baselines(baseline_path(tmp_path, "cpu", "tiny-sd"))) == [
        "0.3",
        "0.5",
        "0.7",
    ]
    assert load(tmp_path, 0.5).psnr == 20.0  # this run's entry replaced the stored one
    assert load(tmp_path, 0.5, model="tiny-ldm").model == "tiny-ldm"


def test_a_missing_baseline_says_how_to_create_it(tmp_path):
    with pytest.raises(
        MissingBaseline, match=f"no baseline for tiny-sd at ratio 0.5 on cpu.*{SAVE}"
    ):
        load(tmp_path, 0.5)
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.3)])
    with pytest.raises(MissingBaseline, match="tiny-sd.json; create it with") as info:
        load(tmp_path, 0.5)
    assert info.value.path == baseline_path(tmp_path, "cpu", "tiny-sd")


CORRUPT = {
    "not json": "{ this is not json",
    "wrong schema": json.dumps({"schema": 99, "device": "cpu", "model": "m", "entries": {}}),
    "entries not a mapping": json.dumps(
        {"schema": 1, "device": "cpu", "model": "m", "entries": []}
    ),
    "entry without fingerprint": json.dumps(
        {
            "schema": 1,
            "device": "cpu",
            "model": "m",
            "entries": {"0.5": {"ratio": 0.5, "time_base": [1.0], "time_tome": [0.5]}},
        }
    ),
    "unpaired samples": json.dumps(
        {
            "schema": 1,
            "device": "cpu",
            "model": "m",
            "entries": {
                "0.5": {
                    "ratio": 0.5,
                    "time_base": [1.0, 1.0],
                    "time_tome": [0.5],
                    "fingerprint": {},
                }
            },
        }
    ),
}


@pytest.mark.parametrize("text", CORRUPT.values(), ids=CORRUPT.keys())
def test_a_corrupt_file_fails_comparison_naming_it(tmp_path, text):
    path = baseline_path(tmp_path, "cpu", "tiny-sd")
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorruptBaseline, match=f"baseline file {path} is corrupt") as info:
        load(tmp_path, 0.5)
    assert info.value.path == path


def test_saving_over_a_corrupt_file_moves_it_aside_and_says_so(tmp_path):
    path = baseline_path(tmp_path, "cpu", "tiny-sd")
    path.parent.mkdir(parents=True)
    path.write_text(CORRUPT["not json"], encoding="utf-8")
    outcome = save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
    assert outcome.moved_aside is not None
    assert outcome.moved_aside.name.startswith("tiny-sd.json.corrupt-")
    assert outcome.moved_aside.read_text(encoding="utf-8") == CORRUPT["not json"]
    assert str(path) in outcome.message and str(outcome.moved_aside) in outcome.message
    assert load(tmp_path, 0.5) == entry(0.5).result
    second = save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.3)])
    assert second.moved_aside is None and second.message is None


def test_a_fingerprint_mismatch_shows_the_differing_keys(tmp_path):
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
    now = fingerprint(steps=5, seed=0, versions={"torch": "2.14"})
    with pytest.raises(FingerprintMismatch) as info:
        load(tmp_path, 0.5, fp=now)
    message = str(info.value)
    assert "steps: baseline 3, now 5" in message
    assert "versions.torch: baseline '2.13', now '2.14'" in message
    assert "seed" not in message
    assert SAVE in message
    assert (info.value.baseline, info.value.current) == (FP, now)


def test_fingerprint_is_plain_json_and_records_versions():
    import torch

    fp = fingerprint(resolution=(64, 64), dtype=torch.float16, tome={"sx": 2}, guidance=7.5)
    assert fp["resolution"] == [64, 64]
    assert fp["dtype"] == "torch.float16"
    assert set(fp["versions"]) == {"torch", "diffusers", "tomesd"}
    assert fp["versions"]["torch"] == torch.__version__
    assert json.loads(json.dumps(fp)) == fp


def test_compare_fingerprints_sees_only_real_differences():
    assert compare_fingerprints({"size": (64, 64)}, {"size": [64, 64]}) == []
    assert compare_fingerprints({"a": 1}, {"b": 1}) == [
        "a: baseline 1, now '(absent)'",
        "b: baseline '(absent)', now 1",
    ]


def test_the_folder_is_created_when_missing(tmp_path):
    folder = tmp_path / "new" / "baselines"
    outcome = save_entries(folder, "cuda-nvidia-h200", "tiny-sd", [entry(0.5)])
    assert outcome.path == folder / "cuda-nvidia-h200" / "tiny-sd.json"
    assert outcome.path.is_file()


def test_a_folder_that_cannot_be_created_gets_a_clear_error(tmp_path):
    blocker = tmp_path / "baselines"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    with pytest.raises(BaselineFolderError, match=f"cannot write baselines to {blocker / 'cpu'}"):
        save_entries(blocker, "cpu", "tiny-sd", [entry(0.5)])


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
    path = baseline_path(tmp_path, "cpu", "tiny-sd")
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(baselines.os, "replace", refuse)
    with pytest.raises(BaselineFolderError, match="Permission denied"):
        save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.3)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny-sd.json", "tiny-sd.json.lock"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_a_read_only_folder_gets_a_clear_error(tmp_path):
    folder = tmp_path / "cpu"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(BaselineFolderError, match=f"cannot write baselines to {folder}"):
            save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_an_unreadable_path_is_a_baseline_error_not_a_traceback(tmp_path):
    baseline_path(tmp_path, "cpu", "tiny-sd").mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(BaselineError, match="cannot read baseline file"):
        load(tmp_path, 0.5)


def _writer(folder: str, worker: int, barrier) -> None:
    """One process of the concurrency test: several saves, each of new ratios and models."""
    barrier.wait()
    for step in range(4):
        ratio = round(0.01 * (worker * 10 + step), 2)
        save_entries(folder, "cpu", "shared", [entry(ratio, model="shared")])
        save_entries(folder, "cpu", f"own-{worker % 2}", [entry(ratio, model=f"own-{worker % 2}")])


def test_concurrent_writers_lose_no_entry(tmp_path):
    """Real processes, as under pytest -n: the lock makes read-merge-write one step."""
    context = multiprocessing.get_context("spawn")
    workers = 6
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=_writer, args=(str(tmp_path), w, barrier)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * workers
    expected = {ratio_key(round(0.01 * (w * 10 + s), 2)) for w in range(workers) for s in range(4)}
    assert set(read_baselines(baseline_path(tmp_path, "cpu", "shared"))) == expected
    own = set(read_baselines(baseline_path(tmp_path, "cpu", "own-0")))
    own |= set(read_baselines(baseline_path(tmp_path, "cpu", "own-1")))
    assert own == expected
    leftovers = [p.name for p in (tmp_path / "cpu").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


@pytest.mark.parametrize("missing", [("psnr",), ("ssim",), ("psnr", "ssim")])
def test_an_entry_without_quality_is_corrupt_where_images_are_scored(tmp_path, missing):
    """A null psnr or ssim used to read as "no baseline yet" for that row: the quality gate
    went off without a word, and a planted quality loss passed."""
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5, **dict.fromkeys(missing))])
    path = baseline_path(tmp_path, "cpu", "tiny-sd")
    with pytest.raises(CorruptBaseline) as info:
        load_entry(tmp_path, "cpu", "tiny-sd", 0.5, fingerprint=FP, save_command=SAVE, quality=True)
    message = str(info.value)
    assert (
        f"baseline file {path} is corrupt: entry '0.5' has {' and '.join(missing)} null" in message
    )
    assert SAVE in message
    # random weights: quality is not scored, and null is what such an entry holds
    assert load(tmp_path, 0.5).ratio == 0.5


def test_unknown_fingerprint_keys_are_left_out_before_measuring(tmp_path):
    save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
    now = {**FP, "resolution": [64, 64]}
    with pytest.raises(FingerprintMismatch, match="resolution"):
        load(tmp_path, 0.5, fp=now)
    found = load_entry(
        tmp_path, "cpu", "tiny-sd", 0.5, fingerprint=now, save_command=SAVE, unknown=("resolution",)
    )
    assert found == entry(0.5).result


def test_a_lock_that_is_a_directory_is_named_as_such(tmp_path):
    path = baseline_path(tmp_path, "cpu", "tiny-sd")
    path.with_name(path.name + ".lock").mkdir(parents=True)
    with pytest.raises(BaselineFolderError) as info:
        save_entries(tmp_path, "cpu", "tiny-sd", [entry(0.5)])
    message = str(info.value)
    assert f"{path}.lock is a directory, not a lock file" in message
    assert "writable" not in message
