"""Data: frames (CSV/pandas <-> arrays), frequencies, windows, GluonTS adapters, synthetic corpora."""
