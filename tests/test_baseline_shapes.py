"""Baseline files that are valid JSON of the wrong shape are corrupt, naming file and field."""

from __future__ import annotations

import json
import math
import re

import pytest

from pytest_tome.gate.results import RatioResult
from pytest_tome.gate.store.baselines import (
    BaselineEntry,
    CorruptBaseline,
    baseline_path,
    read_baselines,
    save_entries,
)
from pytest_tome.gate.store.fingerprints import fingerprint

FP = fingerprint(steps=3, seed=0, versions={"torch": "2.13"})


@pytest.fixture
def saved(tmp_path):
    result = RatioResult(
        "tiny-sd", 0.5, "cpu", time_base=(1.0, 1.1), time_tome=(0.5, 0.6), speedup=2.0,
        speedup_ci=(1.8, 2.2), memory_base=10, memory_tome=12, memory_base_samples=(10, 11),
        memory_tome_samples=(12, 13), psnr=math.inf, ssim=1.0, patched_layers=4,
    )  # fmt: skip
    save_entries(tmp_path, "cpu", "tiny-sd", [BaselineEntry(result, FP)])
    return baseline_path(tmp_path, "cpu", "tiny-sd")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("fingerprint", "steps=3", "an object of settings"),
        ("time_base", [1.0, 0.0], "positive seconds"),
        ("time_tome", [-0.5, 0.6], "positive seconds"),
        ("time_tome", ["0.5", "0.6"], "positive seconds"),
        ("psnr", {"db": 30}, "decibels"),
        ("psnr", "high", "decibels"),
        ("ssim", "0.9", "a number in \\[-1, 1\\]"),
        ("memory_tome_samples", ["12", "13"], "a list of bytes"),
        ("memory_base", -4, "bytes"),
        ("speedup_ci", [1.8], "two numbers"),
        ("patched_layers", 2.5, "an integer >= 0"),
        ("ratio", "0.5", "a number in \\[0, 1\\)"),
    ],
)
def test_a_wrong_shape_is_reported_like_a_corrupt_file_naming_file_and_field(
    saved, field, value, expected
):
    doc = json.loads(saved.read_text(encoding="utf-8"))
    doc["entries"]["0.5"][field] = value
    saved.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CorruptBaseline) as info:
        read_baselines(saved)
    message = str(info.value)
    assert f"baseline file {saved} is corrupt" in message
    assert f"field {field} is " in message
    assert re.search(expected, message), message


def test_an_entry_that_is_not_an_object_is_corrupt(saved):
    doc = json.loads(saved.read_text(encoding="utf-8"))
    doc["entries"]["0.5"] = [1, 2]
    saved.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CorruptBaseline, match="an entry is list, expected an object"):
        read_baselines(saved)


def test_a_well_shaped_file_reads_back(saved):
    assert read_baselines(saved)["0.5"].result.memory_tome_samples == (12, 13)
