"""The one atomic writer: whole files only, no temporary files left, strays cleaned up."""

from __future__ import annotations

import os
import time

import pytest

from pytest_tome import atomic
from pytest_tome.gate.store import baselines


def test_writes_the_whole_file_with_a_umask_mode(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic.write_atomic(tmp_path / "a.json", b"new")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_rename_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_atomic(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert target.read_bytes() == b"old"


def _stray(folder, name: str, age_s: float):
    path = folder / name
    path.write_bytes(b"half")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_a_write_removes_old_strays_of_a_killed_save_and_nothing_else(tmp_path) -> None:
    old = _stray(tmp_path, ".tiny-sd.json.4242.0badc0de.tmp", age_s=3600)
    fresh = _stray(tmp_path, ".tiny-sd.json.4243.00c0ffee.tmp", age_s=1)  # a live writer's
    foreign = _stray(tmp_path, "notes.tmp", age_s=3600)  # not ours: kept
    atomic.write_atomic(tmp_path / "report.json", b"{}")
    assert not old.exists()
    assert fresh.exists() and foreign.exists()


def test_remove_stale_temporaries_reports_what_it_removed(tmp_path) -> None:
    old = _stray(tmp_path, ".a.png.1.abcdef01.tmp", age_s=700)
    assert atomic.remove_stale_temporaries(tmp_path) == [old]
    assert atomic.remove_stale_temporaries(tmp_path) == []


def test_baselines_and_report_share_the_writer(tmp_path, monkeypatch) -> None:
    from pytest_tome.report import files

    assert baselines.write_atomic is atomic.write_atomic
    written = []
    monkeypatch.setattr(atomic, "write_atomic", lambda path, data: written.append(path) or path)
    files.write_atomic(tmp_path / "report.md", b"# report")
    assert written == [tmp_path / "report.md"]
