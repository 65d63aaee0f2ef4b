"""Shared setup of the project's own tests."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _heavy_stack_imported() -> None:
    """pytester's in-process runs restore sys.modules after each run, and torch cannot import
    its operator libraries twice in one process. Importing the heavy stack once, before the
    first test, keeps it in the snapshot that pytester restores to (and `pytest --help`
    fast, as nothing heavy is imported at conftest load)."""
    import diffusers  # noqa: F401
    import torch._dynamo  # noqa: F401
    from diffusers import DDPMPipeline, LDMPipeline, StableDiffusionPipeline  # noqa: F401

    import pytest_tome.engine
    import pytest_tome.gate.check
    import pytest_tome.report.plots  # matplotlib, which report.trend imports only to draw
    import pytest_tome.report.summary  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` is the older name of `bench`: `-m "not bench"` leaves both out."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("bench"):
            item.add_marker(pytest.mark.bench)
