"""Expected errors (a model that will not load, a patch that merges nothing, a bad baseline)
become plain test failures with their message, not tracebacks from deep inside torch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def fail_test_on(*errors: type[BaseException], prefix: str = "") -> Iterator[None]:
    """Inside the block, any of `errors` fails the test with `prefix` and its message."""
    __tracebackhide__ = True
    try:
        yield
    except errors as exc:
        raise pytest.fail.Exception(f"{prefix}{exc}", pytrace=False) from None
