"""Measuring: a RunPlan in, raw samples out (rounds, clocks, memory, quality, headroom)."""
