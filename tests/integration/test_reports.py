"""The daily reports: the console's pages as static HTML files that open on their own, their
tables as xlsx and CSV, the day's write-offs up to the time asked, files with the mode asked
(whatever the umask), written atomically. SQLite and PostgreSQL, on the demo's ledger of
test_statistics (the demo's events on 2026-03-14, manual acts on 2026-05-20 and 2026-06-02)."""

from __future__ import annotations

import csv
import io
import os
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import lxml.html
import openpyxl
import pytest
from sqlalchemy import func, select

from bridge.adapters.store.schema import movement
from bridge.services.reports import write_reports
from tests.browser.helpers import console_client
from tests.integration.test_statistics import T1, demo, page_tables  # noqa: F401 - a fixture

DAY = T1.date()  # 2026-05-20: a manual write-off, a correction, a forced write-off at 14:00
HTML = ("index.html", "statistics.html", "reconciliation.html", "alerts.html")


@pytest.fixture
def strict_umask():
    """A umask that would leave files readable by their owner only: the modes must not care."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text("utf-8-sig"), newline=""), delimiter=";"))


def _moved_between(engine, start: datetime, end: datetime) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(movement)
            .where(movement.c.at >= start, movement.c.at < end)
        ).scalar_one()


def test_the_reports_of_a_day_are_group_readable_standalone_files(
    demo,  # noqa: F811
    tmp_path,
    strict_umask,
):
    settings, engine = demo
    folder = tmp_path / "reports" / DAY.isoformat()
    written = write_reports(engine, folder, day=DAY, now=datetime(2026, 5, 21, 2, 30, tzinfo=UTC))
    names = [path.name for path in written]
    print(names)
    assert set(HTML) <= set(names)
    assert {"statistics.xlsx", "reconciliation.xlsx", "movements.csv", "alerts.csv"} <= set(names)
    assert all(path.parent == folder for path in written)
    assert {_mode(path) for path in written} == {0o640}
    assert _mode(folder) == _mode(folder.parent) == 0o750
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporary files left

    # The day's movements, all of it: the report ran after the day ended.
    start = datetime(2026, 5, 20, tzinfo=UTC)
    day_moves = _moved_between(engine, start, start + timedelta(days=1))
    heading, *rows = _csv(folder / "movements.csv")
    assert len(rows) == day_moves == 3
    assert {row[heading.index("who")] for row in rows} == {"Test Officer (test)"}
    _, *raised = _csv(folder / "alerts.csv")
    # The forced write-off went beyond the ceiling, and so used the licence up.
    assert [row[2] for row in raised] == ["manual-over-use", "exhausted"]
    book = openpyxl.load_workbook(folder / "reconciliation.xlsx")
    assert book.sheetnames == ["licences", "lines", "movements", "refusals", "alerts"]
    assert book["movements"].max_row - 1 == 3

    # The statistics file shows what the console shows for that day.
    client = console_client(settings, role="auditor", engine=engine)
    console = page_tables(
        client.get(
            "/statistics", params={"from": "2026-05-20", "to": "2026-05-20", "period": "day"}
        ).text
    )
    report = page_tables((folder / "statistics.html").read_text("utf-8"))
    assert report == console
    assert report["stats_exports_by_destination"]  # something to compare

    # Every page opens on its own: its style sheet inside it, links to files next to it.
    for name in HTML:
        document = lxml.html.fromstring((folder / name).read_bytes())
        (sheet,) = document.xpath("//link[@rel='stylesheet']/@href")
        assert sheet.startswith("data:text/css;base64,")
        for link in document.xpath("//a/@href | //img/@src | //form/@action"):
            assert link == "#" or (folder / link).is_file(), (name, link)
        assert not document.xpath("//form[@method='post']"), name  # nothing to send anywhere
        assert not document.xpath("//script")
    index = lxml.html.fromstring((folder / "index.html").read_bytes())
    assert set(index.xpath("//ul[@class='files']//a/@href")) == set(names) - {"index.html"}


def test_a_report_written_during_the_day_covers_it_up_to_then(demo, tmp_path):  # noqa: F811
    _, engine = demo
    before = write_reports(engine, tmp_path / "early", day=DAY, now=T1 - timedelta(hours=1))
    _, *rows = _csv(tmp_path / "early" / "movements.csv")
    assert rows == []  # the manual acts came at 14:00
    after = write_reports(engine, tmp_path / "late", day=DAY, now=T1 + timedelta(minutes=1))
    _, *rows = _csv(tmp_path / "late" / "movements.csv")
    assert len(rows) == 3
    assert [p.name for p in before] == [p.name for p in after]


def test_the_mode_is_the_one_asked_for_and_a_rewrite_replaces_the_files(demo, tmp_path):  # noqa: F811
    _, engine = demo
    folder = tmp_path / "private"
    now = datetime(2026, 5, 21, tzinfo=UTC)
    first = write_reports(engine, folder, day=DAY, now=now, mode="0600")
    assert {_mode(path) for path in first} == {0o600} and _mode(folder) == 0o700
    inode = (folder / "statistics.html").stat().st_ino
    again = write_reports(engine, folder, day=DAY, now=now, mode=0o644)
    assert {_mode(path) for path in again} == {0o644} and _mode(folder) == 0o755
    assert (folder / "statistics.html").stat().st_ino != inode  # renamed over, not rewritten
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in again)


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("rw-r-----", "not an octal mode"),
        (0o040, "the owner can read and write"),
        ("1777", "0o1777"),
    ],
)
def test_a_mode_that_cannot_be_used_is_refused_before_anything_is_written(
    demo,  # noqa: F811
    tmp_path,
    mode,
    why,
):
    _, engine = demo
    with pytest.raises(ValueError, match=why):
        write_reports(engine, tmp_path / "r", day=DAY, now=datetime.now(UTC), mode=mode)
    assert not (tmp_path / "r").exists()


def test_a_day_not_begun_is_refused(demo, tmp_path):  # noqa: F811
    _, engine = demo
    with pytest.raises(ValueError, match="the report of 2026-05-20 cannot be written at"):
        write_reports(
            engine, tmp_path / "r", day=date(2026, 5, 20), now=datetime(2026, 5, 19, tzinfo=UTC)
        )
    assert not (tmp_path / "r").exists()
