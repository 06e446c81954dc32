"""Replace a file all at once: written beside it under a temporary name, then renamed over it.

A reader never sees half a file, and a failed or interrupted write leaves the old file as it was.
The rename is only safe for a regular file (or nothing yet) at the path: a symlink is followed (the
file it points to is replaced, the link stays) and a FIFO or device is written in place. Standard
library only: the command line imports it on every call.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def written_through(path: str | Path) -> bool:
    """True for an existing FIFO, device, socket or pipe (``/dev/stdout``, ``>(gzip)``): opened and
    written in place, never replaced. ``stat`` follows the /proc/self/fd links that realpath cannot."""
    try:
        mode = os.stat(os.path.expanduser(str(path))).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def replace_file(path: str | Path, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call ``write(temporary_path)``, then rename that file over ``path``; return the path written.

    The new file keeps the old one's mode (a new file gets ``0o666 & ~umask``, as ``open`` gives it),
    so replacing a picture or a CSV does not change who may read it. ``suffix`` ends the temporary
    name, for writers that pick the format from it. Missing parent folders are made.
    """
    given = os.path.expanduser(str(path))
    if written_through(given):
        write(given)
        return Path(given)
    target = Path(os.path.realpath(given))
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    try:
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        write(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone after the rename; removed after a failure
    return target


def replace_folder(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_folder)``, then put that folder at ``path`` (its real path: a symlink
    is followed), removing the folder there; return the path written. A failure leaves ``path`` as
    it was. The caller decides whether the old folder may go (an earlier checkpoint, say)."""
    target = Path(os.path.realpath(os.path.expanduser(str(path))))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it private; the result is an ordinary folder
        if target.is_dir():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
