"""Accuracy analysis on top of the runners: per-layer error, and the tuning search."""
