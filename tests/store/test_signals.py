"""Change signals (healthbridge.store.signals): a revocation written by one server process must
be seen by every other process on its next request (RFC 7009 section 2, SECURITY.md "Revocation
takes effect at once"); the signal is what lets readers skip the database while nothing moved."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from healthbridge.store.signals import FileSignal, LocalSignal
from healthbridge.store.sql import open_repository


async def test_local_signal_moves_on_every_change() -> None:
    signal = LocalSignal()
    seen = {signal.current()}
    for _ in range(5):
        await signal.changed()
        seen.add(signal.current())
    assert len(seen) == 6 and None not in seen


async def test_a_file_signal_is_shared_by_every_opener_and_never_repeats(tmp_path: Path) -> None:
    """Two openers of the same file stand for two processes; concurrent bumps from both are
    all counted (none lost to a race) and each moves the signal both see."""
    writer, reader = FileSignal(tmp_path / "s"), FileSignal(tmp_path / "s")
    try:
        seen = [reader.current()]
        for _ in range(50):
            await writer.changed()
            seen.append(reader.current())
        assert None not in seen and len(set(seen)) == len(seen)
        before = reader.current()
        assert before is not None
        await asyncio.gather(*(s.changed() for _ in range(20) for s in (writer, reader)))
        assert reader.current() == writer.current() == before + 40
        again = FileSignal(tmp_path / "s")  # a process started later sees the same counter
        assert again.current() == reader.current()
        await again.close()
    finally:
        await writer.close()
        await reader.close()


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


async def test_bumps_from_several_processes_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "s"
    signal = FileSignal(path)
    start = signal.current()
    assert start is not None
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from healthbridge.store.signals import FileSignal\n"
        "s = FileSignal(Path(sys.argv[1]))\n"
        "async def main():\n"
        "    for _ in range(300):\n"
        "        await s.changed()\n"
        "asyncio.run(main())\n"
    )
    workers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(path))
        for _ in range(3)
    ]
    assert [await w.wait() for w in workers] == [0, 0, 0]
    assert signal.current() == start + 900
    await signal.close()
