"""The project's own ToMe gate over the embedded pipelines, against baselines/<device>/.

Run it as the main job:  pytest tests/test_gate.py --tome-ratios=0.3,0.5
Save new baselines with: pytest tests/test_gate.py --tome-ratios=0.3,0.5 --tome-save-baselines
"""

import pytest


@pytest.mark.gate
def test_tome_gate(tome_gate, tome_ratio):
    tome_gate(tome_ratio)
