"""Which platforms an event is delivered to (CONTRACT §4: in `targets` and enabled)."""

from __future__ import annotations

from collections.abc import Collection

from connector.models import OrderChangedEvent, Platform


def plan_deliveries(event: OrderChangedEvent, enabled: Collection[Platform]) -> list[Platform]:
    return [platform for platform in event.targets.platforms() if platform in enabled]
