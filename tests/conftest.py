"""Shared setup of the project's own tests."""

# pytester's in-process runs restore sys.modules after each run, and torch cannot import its
# operator libraries twice in one process. Importing the heavy stack here, before any inner
# run, keeps it in the snapshot that pytester restores to.
import diffusers  # noqa: F401
import torch._dynamo  # noqa: F401
from diffusers import DDPMPipeline, LDMPipeline, StableDiffusionPipeline  # noqa: F401

import pytest_tome.gate
import pytest_tome.patch
import pytest_tome.report  # noqa: F401
