"""The semantics of `connector.stores.base`, checked alike on every backend.

`store` and `peer` are two replicas on one namespace (separate connections for SQLite, Redis and
PostgreSQL), so races between them are real races on the backend.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest

from connector.models import Outcome, Platform
from connector.stores.base import Claim, ClaimStatus, DeliveryKey, DeliveryState, IdempotencyStore
from connector.stores.memory import MemoryStore
from tests.stores.conftest import Backend

LONG_LEASE = 60.0
SHORT_LEASE = 0.2


def delivery(
    order: str | None = None,
    version: int = 1,
    platform: Platform = Platform.VUCUSTOM,
    event_id: str | None = None,
) -> DeliveryKey:
    """A delivery of a new event, by default for an order of its own."""
    return DeliveryKey(event_id or f"evt-{uuid.uuid4()}", platform, order or an_order(), version)


def an_order() -> str:
    return f"ord-{uuid.uuid4().hex[:12]}"


async def applied(
    store: IdempotencyStore, order: str, version: int, platform: Platform = Platform.VUCUSTOM
) -> None:
    key = delivery(order, version, platform)
    await store.claim(key, "applier", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"applied")


async def lapsed(peer: IdempotencyStore, sentinel: DeliveryKey, timeout_s: float = 10.0) -> None:
    """Returns once `sentinel`'s lease has lapsed on the store's own clock (a peer can take it over).

    Claimed right after the leases a test waits on, with the same lease, it lapses no earlier than
    they do; asking about it leaves them untouched.
    """
    async with asyncio.timeout(timeout_s):
        # The store's clock is not observable otherwise: poll it (each BUSY answer changes nothing).
        while True:
            if await peer.claim(sentinel, "watcher", SHORT_LEASE) == Claim(ClaimStatus.PROCEED):
                return
            await asyncio.sleep(0.01)


async def sentinel_lease(store: IdempotencyStore) -> DeliveryKey:
    key = delivery()
    await store.claim(key, "sentinel", SHORT_LEASE)
    return key


async def past(moment: datetime) -> None:
    """Returns once the wall clock has moved beyond `moment`."""
    # Records stamped up to `moment` must compare older than the cutoff, later ones not.
    await asyncio.sleep(max((moment - datetime.now(UTC)).total_seconds(), 0) + 0.002)
    assert datetime.now(UTC) > moment


# --- claim: the state machine -------------------------------------------------------------------


async def test_first_claim_proceeds(store: IdempotencyStore) -> None:
    assert await store.claim(delivery(), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_claim_after_outcome_returns_the_stored_result(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.REJECTED, b'{"outcome":"rejected"}')

    expected = Claim(ClaimStatus.UNREPORTED, result=b'{"outcome":"rejected"}')
    assert await peer.claim(key, "b", LONG_LEASE) == expected
    assert await store.claim(key, "a", LONG_LEASE) == expected


async def test_claim_after_report_is_duplicate(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result")
    await store.mark_reported([key])

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)
    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)


async def test_claim_by_another_owner_is_busy_while_the_lease_is_fresh(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)


async def test_claim_by_the_same_owner_is_reentrant(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)

    assert await peer.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)
    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)
    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)


async def test_expired_lease_is_taken_over(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "crashed", SHORT_LEASE)
    await lapsed(peer, await sentinel_lease(store))

    assert await peer.claim(key, "b", SHORT_LEASE) == Claim(ClaimStatus.PROCEED)
    # Now b's lease is the fresh one: the old owner is kept out and cannot release it.
    assert await store.claim(key, "crashed", SHORT_LEASE) == Claim(ClaimStatus.BUSY)
    await store.release(key, "crashed")
    assert await store.claim(key, "c", SHORT_LEASE) == Claim(ClaimStatus.BUSY)


async def test_reclaim_by_the_owner_renews_its_lease(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", SHORT_LEASE)
    await lapsed(peer, await sentinel_lease(store))
    await store.claim(key, "a", SHORT_LEASE)

    assert await peer.claim(key, "b", SHORT_LEASE) == Claim(ClaimStatus.BUSY)


# --- release -------------------------------------------------------------------------------------


async def test_release_lets_another_owner_proceed_at_once(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.release(key, "a")

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_release_by_another_owner_keeps_the_claim(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await peer.release(key, "b")

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)


async def test_release_after_an_outcome_keeps_the_outcome(store: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.EXHAUSTED, b"exhausted")
    await store.release(key, "a")

    assert await store.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"exhausted")


async def test_release_of_an_unknown_delivery_does_nothing(store: IdempotencyStore) -> None:
    key = delivery()
    await store.release(key, "a")

    assert await store.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


# --- record_outcome and the version guard --------------------------------------------------------


async def test_version_not_newer_than_applied_is_stale(store: IdempotencyStore) -> None:
    order = an_order()
    await applied(store, order, 5)

    assert await store.claim(delivery(order, 4), "a", LONG_LEASE) == Claim(
        ClaimStatus.STALE, applied_version=5
    )
    assert await store.claim(delivery(order, 5), "a", LONG_LEASE) == Claim(
        ClaimStatus.STALE, applied_version=5
    )
    assert await store.claim(delivery(order, 6), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_stale_claim_holds_the_delivery_until_its_outcome(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    order = an_order()
    await applied(store, order, 5)
    key = delivery(order, 3)
    await store.claim(key, "a", LONG_LEASE)

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)
    await store.record_outcome(key, Outcome.SKIPPED_STALE, b"skipped")
    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"skipped")


async def test_applied_version_only_rises(store: IdempotencyStore) -> None:
    order = an_order()
    await applied(store, order, 10)
    await applied(store, order, 7)

    assert await store.claim(delivery(order, 9), "a", LONG_LEASE) == Claim(
        ClaimStatus.STALE, applied_version=10
    )
    assert await store.claim(delivery(order, 11), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.APPLIED])
async def test_outcomes_other_than_applied_leave_the_version_alone(
    store: IdempotencyStore, outcome: Outcome
) -> None:
    order = an_order()
    await applied(store, order, 3)
    key = delivery(order, 10)
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, outcome, b"not applied")

    assert await store.claim(delivery(order, 4), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_applied_versions_are_kept_per_order_and_platform(store: IdempotencyStore) -> None:
    order = an_order()
    await applied(store, order, 10, Platform.VUCUSTOM)

    assert (
        await store.claim(delivery(order, 1, Platform.SELLERCLOUD), "a", LONG_LEASE)
    ).status is ClaimStatus.PROCEED
    assert (await store.claim(delivery(an_order(), 1), "a", LONG_LEASE)).status is ClaimStatus.PROCEED


async def test_large_versions_compare_exactly(store: IdempotencyStore) -> None:
    order, version = an_order(), 2**60 + 1  # beyond a double's exact integers
    await applied(store, order, version)

    assert await store.claim(delivery(order, version), "a", LONG_LEASE) == Claim(
        ClaimStatus.STALE, applied_version=version
    )
    assert await store.claim(delivery(order, version + 1), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_outcome_recorded_without_a_claim_is_kept(store: IdempotencyStore) -> None:
    key = delivery()
    await store.record_outcome(key, Outcome.UNMAPPABLE, b"unmappable")

    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"unmappable")


async def test_last_recorded_outcome_wins(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.EXHAUSTED, b"first")
    await peer.record_outcome(key, Outcome.APPLIED, b"second")

    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.UNREPORTED, result=b"second")


async def test_outcome_recorded_as_reported_is_a_duplicate_in_one_write(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery(version=2)
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result", reported=True)

    assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)
    assert (await store.order_records(key.order_number, [key.event_id])).deliveries == {
        (key.event_id, key.platform): DeliveryState.REPORTED
    }
    # The applied version rose in the same write: an older version of the order is stale.
    older = delivery(order=key.order_number, version=1)
    assert (await store.claim(older, "a", LONG_LEASE)).status is ClaimStatus.STALE


async def test_outcomes_recorded_as_reported_in_a_batch(store: IdempotencyStore) -> None:
    keys = [delivery() for _ in range(3)]
    for key in keys:
        await store.claim(key, "a", LONG_LEASE)
    await store.record_outcomes([(key, Outcome.REJECTED, b"rejected") for key in keys], reported=True)

    for key in keys:
        assert await store.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)


async def test_a_reported_outcome_over_a_done_one_leaves_it_reported(store: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result")
    await store.record_outcome(key, Outcome.APPLIED, b"result", reported=True)
    await store.record_outcome(key, Outcome.APPLIED, b"late, not reported")

    assert await store.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)


async def test_outcome_after_report_stays_reported(store: IdempotencyStore) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result")
    await store.mark_reported([key])
    await store.record_outcome(key, Outcome.APPLIED, b"result again")

    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)


async def test_result_bytes_round_trip_exactly(store: IdempotencyStore) -> None:
    key = delivery()
    result = bytes(range(256)) * 256
    await store.record_outcome(key, Outcome.APPLIED, result)

    assert await store.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.UNREPORTED, result=result)


async def test_identifiers_with_separators_do_not_collide(store: IdempotencyStore) -> None:
    keys = [
        DeliveryKey("x:vucustom", Platform.SELLERCLOUD, "o:1", 1),
        DeliveryKey("x", Platform.VUCUSTOM, "o", 1),
        DeliveryKey("x:sellercloud", Platform.VUCUSTOM, "o:1:vucustom", 1),
        DeliveryKey("{x}' %_*?", Platform.VENTMERE, "ordre-é ✓", 1),
    ]
    suffix = uuid.uuid4().hex
    keys = [DeliveryKey(k.event_id + suffix, k.platform, k.order_number + suffix, k.version) for k in keys]
    for number, key in enumerate(keys):
        assert await store.claim(key, f"owner-{number}", LONG_LEASE) == Claim(ClaimStatus.PROCEED)
    await store.record_outcome(keys[0], Outcome.APPLIED, b"0")

    assert (await store.claim(keys[1], "owner-1", LONG_LEASE)).status is ClaimStatus.PROCEED
    assert (await store.claim(keys[2], "owner-2", LONG_LEASE)).status is ClaimStatus.PROCEED


# --- mark_reported -------------------------------------------------------------------------------


async def test_mark_reported_marks_the_whole_batch(store: IdempotencyStore, peer: IdempotencyStore) -> None:
    keys = [delivery(platform=platform) for platform in Platform]
    for key in keys:
        await store.claim(key, "a", LONG_LEASE)
        await store.record_outcome(key, Outcome.APPLIED, b"result")
    unknown = delivery()

    await store.mark_reported([*keys, unknown])

    for key in keys:
        assert await peer.claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)
    assert await peer.claim(unknown, "b", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


async def test_mark_reported_of_an_empty_batch_does_nothing(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    key = delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result")

    await store.mark_reported([])

    assert (await peer.claim(key, "b", LONG_LEASE)).status is ClaimStatus.UNREPORTED


# --- check_event ---------------------------------------------------------------------------------


async def test_check_event_keeps_the_first_fingerprint(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    event_id = f"evt-{uuid.uuid4()}"

    assert await store.check_event(event_id, "fp-1") is True
    assert await peer.check_event(event_id, "fp-1") is True
    assert await peer.check_event(event_id, "fp-2") is False
    assert await store.check_event(event_id, "fp-1") is True


async def test_concurrent_first_sightings_agree_on_one_fingerprint(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    event_ids = [f"evt-{uuid.uuid4()}" for _ in range(40)]

    answers = await asyncio.gather(
        *(
            asyncio.gather(store.check_event(event_id, "fp-a"), peer.check_event(event_id, "fp-b"))
            for event_id in event_ids
        )
    )

    assert all(sorted(pair) == [False, True] for pair in answers)


# --- batch calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
async def test_batch_calls_answer_as_single_calls_one_after_another(
    store: IdempotencyStore, seed: int
) -> None:
    """Random batches (repeated items, shared orders, two owners) against the memory store's single
    calls made one after another: every answer, and the state they leave, must agree."""
    rng = random.Random(seed)
    reference = MemoryStore()
    await reference.open()
    orders = [an_order() for _ in range(3)]
    events = {f"evt-{uuid.uuid4()}": (rng.choice(orders), rng.randint(1, 4)) for _ in range(8)}
    platforms = [Platform.VUCUSTOM, Platform.VENTMERE]

    def some_keys(n: int) -> list[DeliveryKey]:
        picked = [rng.choice(list(events)) for _ in range(n)]
        return [DeliveryKey(e, rng.choice(platforms), *events[e]) for e in picked]

    for round_ in range(5):
        checks = [(rng.choice(list(events)), rng.choice(["fp-a", "fp-b"])) for _ in range(10)]
        expected_checks = [await reference.check_event(*item) for item in checks]
        assert await store.check_events(checks) == expected_checks, f"round {round_}: check_events"

        owner = rng.choice(["owner-a", "owner-b"])
        keys = some_keys(10)
        expected_claims = [await reference.claim(key, owner, LONG_LEASE) for key in keys]
        assert await store.claim_many(keys, owner, LONG_LEASE) == expected_claims, f"round {round_}: claims"

        outcomes = [
            (key, rng.choice(list(Outcome)), f"result-{round_}-{n}".encode())
            for n, key in enumerate(some_keys(8))
        ]
        acknowledged = rng.random() < 0.5
        for item in outcomes:
            await reference.record_outcome(*item, reported=acknowledged)
        await store.record_outcomes(outcomes, reported=acknowledged)

        reported = some_keys(4)
        await reference.mark_reported(reported)
        await store.mark_reported(reported)

    # The state both are left in, seen through claims by an owner of its own.
    every_key = [DeliveryKey(e, p, *events[e]) for e in events for p in platforms]
    seen = [await reference.claim(key, "observer", LONG_LEASE) for key in every_key]
    assert await store.claim_many(every_key, "observer", LONG_LEASE) == seen


async def test_empty_batches_answer_nothing(store: IdempotencyStore) -> None:
    assert await store.check_events([]) == []
    assert await store.claim_many([], "owner", LONG_LEASE) == []
    await store.record_outcomes([])


# --- races between replicas ----------------------------------------------------------------------


async def test_concurrent_claims_of_one_delivery_let_exactly_one_proceed(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    keys = [delivery() for _ in range(50)]
    attempts = [(key, replica, owner) for key in keys for replica, owner in ((store, "a"), (peer, "b"))]
    random.shuffle(attempts)

    claims = await asyncio.gather(
        *(replica.claim(key, owner, LONG_LEASE) for key, replica, owner in attempts)
    )

    by_key: dict[DeliveryKey, list[ClaimStatus]] = {key: [] for key in keys}
    for (key, _, _), claim in zip(attempts, claims, strict=True):
        by_key[key].append(claim.status)
    assert all(sorted(statuses) == [ClaimStatus.BUSY, ClaimStatus.PROCEED] for statuses in by_key.values())


async def test_concurrent_takeovers_of_an_expired_lease_have_one_winner(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    keys = [delivery() for _ in range(30)]
    await asyncio.gather(*(store.claim(key, "crashed", SHORT_LEASE) for key in keys))
    await lapsed(peer, await sentinel_lease(store))

    claims = await asyncio.gather(
        *(
            asyncio.gather(store.claim(key, "b", SHORT_LEASE), peer.claim(key, "c", SHORT_LEASE))
            for key in keys
        )
    )

    assert all(sorted(c.status for c in pair) == [ClaimStatus.BUSY, ClaimStatus.PROCEED] for pair in claims)


async def test_concurrent_applied_outcomes_keep_the_highest_version(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    order = an_order()
    keys = [delivery(order, version) for version in range(1, 41)]
    random.shuffle(keys)

    await asyncio.gather(
        *(
            (store if number % 2 else peer).record_outcome(key, Outcome.APPLIED, b"applied")
            for number, key in enumerate(keys)
        )
    )

    assert await store.claim(delivery(order, 40), "a", LONG_LEASE) == Claim(
        ClaimStatus.STALE, applied_version=40
    )
    assert await peer.claim(delivery(order, 41), "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)


# --- lifecycle -----------------------------------------------------------------------------------


async def test_replicas_opening_a_fresh_namespace_together_all_succeed(backend: Backend) -> None:
    replicas = await asyncio.gather(*(backend.open_replica() for _ in range(4)))

    await asyncio.gather(*(replica.ping() for replica in replicas))
    key = delivery()
    assert await replicas[0].claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.PROCEED)
    assert await replicas[3].claim(key, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)


async def test_records_outlive_the_store_object(backend: Backend, store: IdempotencyStore) -> None:
    if not backend.persistent:
        pytest.skip("memory:// keeps nothing across restarts, by design")
    key, pending = delivery(), delivery()
    await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(key, Outcome.APPLIED, b"result")
    await store.mark_reported([key])
    await store.claim(pending, "a", LONG_LEASE)
    await store.close()

    restarted = await backend.open_replica()

    assert await restarted.claim(key, "a", LONG_LEASE) == Claim(ClaimStatus.DUPLICATE)
    assert await restarted.claim(pending, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)


# --- retention -----------------------------------------------------------------------------------


async def test_purge_deletes_old_records_in_batches_of_at_most_limit(
    backend: Backend, store: IdempotencyStore
) -> None:
    if backend.expires_by_ttl:
        pytest.skip("records expire by TTL; purge has nothing to do (see the retention test)")
    claimed, done, reported = delivery(), delivery(), delivery()
    await store.claim(claimed, "a", LONG_LEASE)
    await store.record_outcome(done, Outcome.REJECTED, b"rejected")
    await store.record_outcome(reported, Outcome.REJECTED, b"rejected")
    await store.mark_reported([reported])
    await applied(store, an_order(), 2)
    await store.check_event(f"evt-{uuid.uuid4()}", "fp")  # five old records
    # The memory store stamps in microseconds: the boundary must come strictly after the last stamp.
    await past(datetime.now(UTC))
    boundary = datetime.now(UTC)
    await past(boundary)
    await store.check_event(f"evt-{uuid.uuid4()}", "fp")
    await store.claim(delivery(), "a", LONG_LEASE)  # two recent ones

    removed = [await store.purge(boundary, 2) for _ in range(4)]

    assert removed == [2, 2, 1, 0]
    assert await store.purge(datetime.now(UTC), 100) == 2


async def test_retention_forgets_old_records_and_keeps_recent_ones_and_applied_versions(
    backend: Backend,
) -> None:
    retention_s = 0.5
    store = await backend.open_replica(retention_s=retention_s)
    order = an_order()
    old_done, old_reported = delivery(order, 1), delivery(order, 2)
    await store.record_outcome(old_done, Outcome.APPLIED, b"done")
    await store.record_outcome(old_reported, Outcome.APPLIED, b"reported")
    await store.mark_reported([old_reported])
    await store.check_event("evt-old", "fp-old")
    if backend.expires_by_ttl:
        await asyncio.sleep(retention_s + 0.05)
    await past(datetime.now(UTC))  # strictly after the last stamp (the memory store's are microseconds)
    boundary = datetime.now(UTC)
    await past(boundary)
    recent = delivery(order, 5)
    await store.claim(recent, "a", LONG_LEASE)
    await store.check_event("evt-recent", "fp-recent")

    removed = await store.purge(boundary, 100)

    assert removed == (0 if backend.expires_by_ttl else 3)
    assert await store.claim(recent, "b", LONG_LEASE) == Claim(ClaimStatus.BUSY)
    assert await store.check_event("evt-recent", "other") is False
    assert await store.check_event("evt-old", "other") is True
    # Old deliveries are forgotten; the applied version still marks older versions stale.
    assert await store.claim(old_done, "b", LONG_LEASE) == Claim(ClaimStatus.STALE, applied_version=2)
    assert await store.claim(old_reported, "b", LONG_LEASE) == Claim(ClaimStatus.STALE, applied_version=2)


# --- order_records: what operators read -----------------------------------------------------------


async def test_order_records_show_applied_versions_and_each_delivery_state(
    store: IdempotencyStore, peer: IdempotencyStore
) -> None:
    order = an_order()
    done = delivery(order, 3, Platform.VENTMERE)
    reported = delivery(order, 2, Platform.VENTMERE)
    claimed = delivery(order, 4, Platform.SELLERCLOUD)
    other = delivery(an_order(), 9, Platform.SELLERCLOUD)
    for key in (reported, done, claimed, other):
        await store.claim(key, "a", LONG_LEASE)
    await store.record_outcome(reported, Outcome.APPLIED, b"r")
    await store.mark_reported([reported])
    await store.record_outcome(done, Outcome.APPLIED, b"d")
    await store.record_outcome(other, Outcome.APPLIED, b"o")

    records = await peer.order_records(order, [reported.event_id, done.event_id, claimed.event_id, "x"])

    assert records.applied == {Platform.VENTMERE: 3}
    assert records.deliveries == {
        (reported.event_id, Platform.VENTMERE): DeliveryState.REPORTED,
        (done.event_id, Platform.VENTMERE): DeliveryState.DONE,
        (claimed.event_id, Platform.SELLERCLOUD): DeliveryState.CLAIMED,
    }
