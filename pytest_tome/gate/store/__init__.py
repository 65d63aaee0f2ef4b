"""Storing: baselines, their fingerprints, and the command that saves one."""
