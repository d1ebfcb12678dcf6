"""Report files: written whole with the mode asked for, in folders readers can enter, keeping
a shared folder's set-group-ID bit (so files get the readers' group, not the writer's)."""

from __future__ import annotations

import os
import stat

from bridge.adapters.report_files import folder_mode, make_folder, write_atomically


def test_folder_modes_let_in_whoever_reads_the_files():
    assert [folder_mode(m) for m in (0o600, 0o640, 0o644, 0o660)] == [0o700, 0o750, 0o755, 0o770]


def test_a_rewrite_replaces_the_file_whole_with_the_mode_asked_for(tmp_path):
    old_umask = os.umask(0o077)
    try:
        folder = tmp_path / "reports" / "2026-12-06"
        make_folder(folder, 0o750)
        target = write_atomically(folder / "alerts.csv", b"old\n", 0o640)
        write_atomically(target, b"new\n", 0o640)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new\n"
    assert [p.name for p in folder.iterdir()] == ["alerts.csv"]  # no temporary file left
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert (
        stat.S_IMODE(folder.stat().st_mode)
        == stat.S_IMODE((tmp_path / "reports").stat().st_mode)
        == 0o750
    )


def test_the_set_group_id_bit_of_a_shared_folder_is_kept(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2770)
    make_folder(shared, 0o750)
    make_folder(shared / "2026-12-06", 0o750)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2750
    # mkdir in a set-group-ID folder passes the bit on; setting the mode keeps it.
    assert stat.S_IMODE((shared / "2026-12-06").stat().st_mode) == 0o2750
