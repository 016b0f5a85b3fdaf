"""The contract test runs on the real stack: the integration suite's topic-set fixtures."""

from tests.integration.conftest import stack_ready, topic_set_factory

__all__ = ["stack_ready", "topic_set_factory"]
