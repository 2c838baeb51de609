"""Stand-in for the ais_bench package (tests only)."""
