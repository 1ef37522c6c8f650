"""Benchmarks of the hot paths, each against a named baseline measured in the same run."""
