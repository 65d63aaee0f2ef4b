"""The gate: interleaved timing, quality, statistics, verdicts and baselines."""
