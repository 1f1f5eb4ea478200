"""Testing kit: virtual time, a test engine, step mocking and pytest fixtures."""

from stepline.testing.clock import MockClock
from stepline.testing.engine import TestEngine

__all__ = ["MockClock", "TestEngine"]
