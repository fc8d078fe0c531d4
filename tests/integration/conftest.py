"""Fixtures shared by the integration tests: the session's tiny-world run (tests/integration/shared_run.py)."""

# A session fixture, used by test_rules and test_determinism.
from tests.integration.shared_run import tiny_run  # noqa: F401
