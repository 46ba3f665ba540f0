"""Where common Kafka clients put a keyed record: the partition each default partitioner picks.

The connector keys its own records (results, DLQ copies) with aiokafka's default partitioner, which
is Java's (murmur2). The input topic is keyed by the OMS, whose client is not ours to know, so
`order-sync history` asks every partitioner here for a candidate partition and reads those first.
"""

from __future__ import annotations

import zlib

from aiokafka.partitioner import murmur2 as _murmur2


def murmur2(key: bytes, partitions: int) -> int:
    """Java's and aiokafka's default, and librdkafka's `murmur2_random`."""
    return (int(_murmur2(key)) & 0x7FFFFFFF) % partitions


def crc32(key: bytes, partitions: int) -> int:
    """librdkafka's default, `consistent_random` (and `consistent`): CRC-32 of the key."""
    return zlib.crc32(key) % partitions


def _fnv1a_32(key: bytes) -> int:
    value = 0x811C9DC5
    for byte in key:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def fnv1a(key: bytes, partitions: int) -> int:
    """librdkafka's `fnv1a` and `fnv1a_random`: FNV-1a (32-bit) of the key, unsigned."""
    return _fnv1a_32(key) % partitions


def fnv1a_signed(key: bytes, partitions: int) -> int:
    """Sarama's (Go) default hash partitioner: FNV-1a as a signed 32-bit number, made positive."""
    value = _fnv1a_32(key)
    signed = value - (1 << 32) if value & 0x80000000 else value
    return abs(signed) % partitions


PARTITIONERS = {
    "murmur2": murmur2,
    "crc32": crc32,
    "fnv1a": fnv1a,
    "fnv1a-signed": fnv1a_signed,
}


def candidate_partitions(key: bytes, partitions: int) -> list[int]:
    """The distinct partitions the known partitioners pick for `key`, murmur2's first."""
    return list(dict.fromkeys(pick(key, partitions) for pick in PARTITIONERS.values()))
