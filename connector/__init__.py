"""order-sync: pushes canonical order changes from Kafka to commerce platforms."""
