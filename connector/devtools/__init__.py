"""Development tools shipped with the connector, never used by `order-sync run`.

- `simulators/`: the four platforms' APIs (auth flows, validation, limits, faults) for tests,
  `order-sync simulate` and `order-sync demo`.
- `broker.py`: the embedded Kafka-protocol broker (Tansu, from the `demo` extra) for tests and the demo.
- `samples.py`: realistic sample events for the demo and the benchmarks.
"""
