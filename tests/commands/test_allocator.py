"""The C allocator is tuned where it is glibc's, and left alone elsewhere."""

from __future__ import annotations

import platform

import pytest

from connector.commands import allocator


def test_glibc_takes_the_settings() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert allocator.tune_allocator() is True


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    allocator._glibc.cache_clear()
    assert allocator.tune_allocator() is False
    allocator._glibc.cache_clear()
