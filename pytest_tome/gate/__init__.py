"""The gate, in three jobs that import no cycle and know nothing of pytest:

- `measure`: a RunPlan in (measure/plan.py), raw samples out: interleaved rounds and their
  clocks, peak memory, image quality, headroom;
- `decide`: samples and a baseline in, a Decision out: statistics, tolerances, verdicts;
- `store`: baselines, fingerprints and the command that saves a baseline.

`results.py` holds the plain records they pass along; `check.py` runs the three for one
gate test and turns the outcome into pytest's pass, fail or skip.
"""
