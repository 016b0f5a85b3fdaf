"""Helpers shared by integration, e2e, fault tests and benchmarks: real processes, waiting."""
