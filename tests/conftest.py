"""Shared fixtures. Tests mirror the package: tests/test_<module>.py, tests/integration/."""
