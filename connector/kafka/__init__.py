"""The Kafka edge shared by every layer, as `platforms/` is the HTTP edge.

- `client.py`: aiokafka client options from settings (every Kafka client takes them from here),
  topic creation, and the boundary where a command's aiokafka errors become `KafkaUnavailableError`.
- `tls.py`: the TLS context (CA, client certificate), and why a TLS connection fails.
- `publisher.py`: result events and DLQ copies, retried until Kafka acknowledges them.
- `partitioners.py`: Kafka's default partitioners (which partition an order's key lands on).

The consumer side is each pipeline's own (`pipeline/source.py`).
"""
