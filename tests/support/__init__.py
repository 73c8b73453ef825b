"""Helpers shared by test suites: backends to run contract tests on, a controllable clock."""
