"""The partitioners `order-sync history` uses to find an order's input partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from connector.kafka.partitioners import candidate_partitions, crc32, fnv1a, fnv1a_signed, murmur2


def test_murmur2_is_aiokafkas_default_partitioner() -> None:
    for n in range(200):
        key = f"ord-{n}".encode()
        assert murmur2(key, 12) == DefaultPartitioner()(key, list(range(12)), list(range(12)))


def test_hashes_match_their_published_check_values() -> None:
    # CRC-32 check value of "123456789"; FNV-1a 32-bit of "a" (from the FNV reference test vectors).
    assert crc32(b"123456789", 2**32) == 0xCBF43926
    assert fnv1a(b"a", 2**32) == 0xE40C292C
    # 0xE40C292C is negative as an int32: sarama takes the absolute value of the signed remainder.
    assert fnv1a_signed(b"a", 7) == abs(0xE40C292C - 2**32) % 7


def test_candidates_are_distinct_and_in_range_with_murmur2_first() -> None:
    for n in range(100):
        key = f"ord-{n}".encode()
        candidates = candidate_partitions(key, 6)
        assert candidates[0] == murmur2(key, 6)
        assert len(set(candidates)) == len(candidates)
        assert all(0 <= p < 6 for p in candidates)
