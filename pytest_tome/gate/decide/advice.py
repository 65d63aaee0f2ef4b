"""What to tell a user whose speed call was too noisy to decide."""

from __future__ import annotations

from pytest_tome.gate.decide.admission import rounds_for


def inconclusive_advice(threads: int | None, baseline_rounds: int | None = None) -> str:
    """What to do about an inconclusive speed call: one thread only if not already used, and
    a baseline re-saved with more rounds if its own interval is short."""
    steps = []
    if baseline_rounds is not None and baseline_rounds < rounds_for():
        steps.append(
            f"re-save the baseline with --tome-rounds={rounds_for()} or more "
            f"(it has {baseline_rounds} rounds, too few for a 95% interval)"
        )
    steps += ["rerun on a quieter machine", "raise --tome-rounds or --tome-max-rounds"]
    if threads != 1:
        steps.append("use --tome-threads=1")
    steps.append("or widen --tome-tol-speed")
    text = ", ".join(steps)
    return text[0].upper() + text[1:] + "; --tome-inconclusive=warn lets it pass."
