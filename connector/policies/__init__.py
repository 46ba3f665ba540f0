"""Per-platform delivery policies, each a small class with one job, composed from `PlatformSettings`.

- `RetryPolicy`: whether and when a delivery attempts again (backoff, `Retry-After`, budget).
- `TokenBucket`: how fast requests may start (FIFO, slows down on 429s).
- `CircuitBreaker`: whether requests may start at all while the platform keeps failing.
- `Backoff`: how a loop waits before trying its infrastructure (Kafka, the store) again.
- `PlatformHold`: whether requests may start at all while the platform throttles all of them.
"""

from connector.policies.backoff import Backoff
from connector.policies.circuit import CircuitBreaker, CircuitState
from connector.policies.hold import PlatformHold
from connector.policies.ratelimit import TokenBucket
from connector.policies.retry import RetryDecision, RetryPolicy, RetryReason

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "CircuitState",
    "PlatformHold",
    "RetryDecision",
    "RetryPolicy",
    "RetryReason",
    "TokenBucket",
]
