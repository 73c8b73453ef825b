"""Change signals (healthbridge.store.signals): a revocation written by one server process must
be seen by every other process on its next request (RFC 7009 section 2, SECURITY.md "Revocation
takes effect at once"); the signal is what lets readers skip the database while nothing moved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from healthbridge.store.signals import MAX_SIGNAL_FILE, FileSignal, LocalSignal
from healthbridge.store.sql import open_repository


async def test_local_signal_moves_on_every_change() -> None:
    signal = LocalSignal()
    seen = {signal.current()}
    for _ in range(5):
        await signal.changed()
        seen.add(signal.current())
    assert len(seen) == 6 and None not in seen


async def test_a_file_signal_is_shared_by_every_opener_and_never_repeats(tmp_path: Path) -> None:
    """Two openers of the same file stand for two processes; bumps within one clock tick
    still move the signal (the size grows), and a full file is replaced, still a change."""
    writer, reader = FileSignal(tmp_path / "s"), FileSignal(tmp_path / "s")
    seen = [reader.current()]
    for _ in range(50):
        await writer.changed()
        seen.append(reader.current())
    assert None not in seen and len(set(seen)) == len(seen)
    (tmp_path / "s").write_bytes(b"." * (MAX_SIGNAL_FILE - 1))
    before = reader.current()
    await writer.changed()  # reaches the cap: replaced by an empty file
    after = reader.current()
    assert (tmp_path / "s").stat().st_size == 0 and after not in (before, None)
    await writer.changed()
    assert reader.current() not in (before, after)


async def test_a_sqlite_database_shares_its_signal_between_repositories(sql_url: str) -> None:
    """Two repositories over one database (two server processes): a change signalled by one
    moves the other's signal (PostgreSQL through LISTEN/NOTIFY, within moments)."""
    first = await open_repository(sql_url)
    second = await open_repository(sql_url)
    try:
        for _ in range(100):  # the PostgreSQL listener connects in the background
            if second.records.signal.current() is not None:
                break
            await asyncio.sleep(0.05)
        before = second.records.signal.current()
        assert before is not None
        await first.records.signal.changed()
        for _ in range(100):
            if second.records.signal.current() != before:
                break
            await asyncio.sleep(0.01)
        assert second.records.signal.current() not in (before, None)
    finally:
        await first.close()
        await second.close()
