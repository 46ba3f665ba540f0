"""What operators see: Prometheus metrics, /healthz and /readyz, JSON logs, and the redaction
that keeps secrets out of all three."""
