"""tsfm.atomic.replace_file: all at once, the old mode kept, links followed, FIFOs written through."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tsfm.atomic import replace_file


def _write(text: str):
    return lambda path: Path(path).write_text(text)


def test_replaces_keeping_the_mode_and_new_files_follow_the_umask(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("old")
    old.chmod(0o640)
    replace_file(old, _write("new"))
    assert old.read_text() == "new" and stat.S_IMODE(old.stat().st_mode) == 0o640
    mask = os.umask(0o027)
    try:
        made = replace_file(tmp_path / "a" / "b" / "new.txt", _write("x"))
    finally:
        os.umask(mask)
    assert made.read_text() == "x" and stat.S_IMODE(made.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "old.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("old")

    def broken(path: str) -> None:
        Path(path).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        replace_file(old, broken)
    assert old.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_a_symlink_is_followed_and_kept(tmp_path):
    real, link = tmp_path / "real.txt", tmp_path / "link.txt"
    real.write_text("old")
    link.symlink_to(real)
    assert replace_file(link, _write("new")) == real.resolve()
    assert link.is_symlink() and real.read_text() == "new"


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    replace_file(fifo, _write("through"))
    reader.join(timeout=30)
    assert got == ["through"] and stat.S_ISFIFO(fifo.stat().st_mode)
