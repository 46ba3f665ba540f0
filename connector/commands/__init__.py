"""The `order-sync` commands (`cli.py`), one module each, and what only they use.

- `cli.py`: the command line; each command's expected failures end in one line and exit 2.
- `run.py` (`order-sync run`: logging, garbage collector, event loop around `app.py`).
- `demo.py` (`order-sync demo`: embedded broker, simulators, the connector and its progress bars),
  `replay.py`, `produce.py`, `validate.py`, `history.py`, `schemas.py` (with `asyncapi.py`),
  `configdoc.py` (the README's configuration table).
- `eventloop.py`: the event loop the long-running commands run on (uvloop or asyncio).
"""
