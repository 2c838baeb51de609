"""Stand-in for ais_bench.infer (tests only)."""
