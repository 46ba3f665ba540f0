"""The pipelines: the input topic read once per platform, and once by the intake.

- `pipeline.py`: one consumer group's loop (fetch within capacity, hand to the stage, commit).
- `source.py`: that group's Kafka client; `backpressure.py`: its in-flight limit and pause state.
- `offsets.py`: which offset may be committed; `lanes.py`: per-order ordering.
- `screening.py`: each message decoded, and its `event_id` checked, once per process.
- `intake.py`: counts and dead-letters input; `delivery.py`: delivers to one platform.
- `pipelines.py`: the set a process runs, started, stopped and reported on together.
"""
