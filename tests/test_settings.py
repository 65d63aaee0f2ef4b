"""Device resolution: what `--tome-device` becomes on this machine and on a GPU box."""

from __future__ import annotations

import pytest
import torch

from pytest_tome.settings import SettingsError, resolve_device


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend this machine has `n` CUDA devices (resolution only asks these two functions)."""

    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return have


def test_auto_is_cpu_without_cuda(gpus) -> None:
    gpus(0)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu", worker_index=3) == "cpu"


def test_each_xdist_worker_takes_its_own_gpu(gpus) -> None:
    gpus(4)
    assert [resolve_device("cuda", worker_index=w) for w in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1",
    ]  # fmt: skip
    assert resolve_device("auto", worker_index=2) == "cuda:2"
    assert resolve_device("auto") == "cuda:0"


def test_an_explicit_index_is_kept_and_checked(gpus) -> None:
    gpus(2)
    assert resolve_device("cuda:1", worker_index=0) == "cuda:1"
    with pytest.raises(SettingsError, match=r"cuda:2: only 2 CUDA device\(s\) here"):
        resolve_device("cuda:2")


def test_cuda_without_cuda_names_the_alternatives(gpus) -> None:
    gpus(0)
    with pytest.raises(
        SettingsError, match=r"--tome-device=cuda: CUDA is not available.*cpu or auto"
    ):
        resolve_device("cuda")
