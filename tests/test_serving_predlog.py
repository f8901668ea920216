import asyncio
import sqlite3

import pytest

from opsnb.errors import ConfigError
from opsnb.serving.predlog import PredictionLog


def rows(n: int, start: int = 0):
    return [(f"id{i}", 1.0 + i, "v1", '{"x": 1}', 0.25, 0.5) for i in range(start, start + n)]


def count(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM predictions").fetchone()[0])


def test_an_append_returns_only_once_its_rows_are_visible_to_another_connection(tmp_path):
    path = tmp_path / "log.sqlite"

    async def main() -> list[int]:
        log = PredictionLog(path)
        seen = []
        try:
            for k in range(3):
                await log.append(rows(5, start=5 * k))
                seen.append(count(path))  # a fresh reader sees the commit at once
        finally:
            log.close()
        return seen

    assert asyncio.run(main()) == [5, 10, 15]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_appends_are_grouped_and_all_committed(tmp_path):
    path = tmp_path / "log.sqlite"

    async def main() -> None:
        log = PredictionLog(path, max_group=64)
        try:
            await asyncio.gather(*(log.append(rows(2, start=2 * k)) for k in range(200)))
        finally:
            log.close()

    asyncio.run(main())
    assert count(path) == 400


def test_feedback_is_stored_for_a_logged_request_and_refused_for_an_unknown_one(tmp_path):
    path = tmp_path / "log.sqlite"

    async def main() -> tuple[bool, bool, bool]:
        log = PredictionLog(path)
        try:
            await log.append(rows(1))
            return (
                await log.feedback("id0", 1.0),
                await log.feedback("id0", 0.0),  # a correction replaces the label
                await log.feedback("nope", 1.0),
            )
        finally:
            log.close()

    assert asyncio.run(main()) == (True, True, False)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT request_id, label FROM feedback").fetchall() == [("id0", 0.0)]


def test_a_failed_statement_fails_only_its_own_request(tmp_path):
    path = tmp_path / "log.sqlite"

    async def main() -> list[object]:
        log = PredictionLog(path)
        try:
            await log.append(rows(1))
            return await asyncio.gather(
                log.append(rows(1)), log.append(rows(1, start=1)), return_exceptions=True
            )  # the first repeats id0: the primary key refuses it
        finally:
            log.close()

    first, second = asyncio.run(main())
    assert isinstance(first, sqlite3.IntegrityError)
    assert second is None
    assert count(path) == 2


def test_an_unknown_synchronous_mode_is_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=r"log synchronous mode 'SOMETIMES' is not one of OFF, NOR"
    ):
        PredictionLog(tmp_path / "log.sqlite", synchronous="SOMETIMES")
