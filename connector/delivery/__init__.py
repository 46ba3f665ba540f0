"""One delivery (one event to one platform) from its built request to its published result.

- `runner.py`: the delivery end to end: request built, idempotency claim, sent (or not), outcome
  recorded, result published.
- `dispatcher.py`: one platform's limits around each send: circuit breaker, platform-wide holds,
  rate limit, concurrency, retries.
"""
