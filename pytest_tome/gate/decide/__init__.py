"""Deciding: samples and a baseline in, a verdict out (statistics, tolerances, verdicts)."""
