"""Fixtures: the four simulators in the test process, for a connector subprocess to talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connector.simulators.server import SimulatorSuite


@pytest.fixture
async def suite() -> AsyncIterator[SimulatorSuite]:
    simulators = SimulatorSuite()
    await simulators.start()
    try:
        yield simulators
    finally:
        await simulators.stop()
