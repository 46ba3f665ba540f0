"""In-process simulators of the four platforms' update-order APIs, with fault injection and a request log.

`server.SimulatorSuite` runs all four; each platform's module holds its auth flow, validation and
order state; `faults`, `requestlog` and `tokens` are the machinery they share.
"""
