from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.pipeline.offsets import OffsetTracker


@st.composite
def offsets_and_completion_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    offsets, current = [], draw(st.integers(min_value=0, max_value=1000))
    for gap in gaps:
        offsets.append(current)
        current += gap
    completed = draw(st.permutations(offsets))
    cut = draw(st.integers(min_value=0, max_value=len(completed)))
    return offsets, list(completed[:cut])


@given(offsets_and_completion_order())
def test_committed_offset_never_passes_an_incomplete_event(case: tuple[list[int], list[int]]) -> None:
    offsets, completion_order = case
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.add(offset)
    done: set[int] = set()
    for offset in completion_order:
        tracker.completed(offset)
        done.add(offset)
        committable = tracker.committable()
        incomplete = [o for o in offsets if o not in done]
        if committable is not None:
            assert all(o >= committable for o in incomplete)
            assert all(o in done for o in offsets if o < committable)
        # and it is as far as it may go: one past the last offset of the completed prefix.
        prefix = [o for o in offsets if not incomplete or o < min(incomplete)]
        if prefix:
            assert committable == prefix[-1] + 1
        else:
            assert committable is None


def test_commit_waits_for_slowest_event() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.add(offset)
    tracker.completed(6)
    tracker.completed(7)
    assert tracker.committable() is None
    tracker.completed(5)
    assert tracker.committable() == 8
    assert tracker.in_flight == 0


def test_offsets_must_increase() -> None:
    tracker = OffsetTracker()
    tracker.add(3)
    try:
        tracker.add(3)
    except ValueError:
        return
    raise AssertionError("a repeated offset was accepted")
