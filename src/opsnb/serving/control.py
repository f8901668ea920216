"""One model version for the whole server: the instruction every worker process follows.

``opsnb serve --workers N`` gives its workers a private folder (mode 0700) holding
``model.json`` = ``{"seq": n, "version": name}``. A reload -- ``POST /admin/reload`` on any
worker, or SIGHUP to the parent -- first verifies the named bundle (signature and hashes,
nothing loaded) where it arrived, and only a bundle that passed is published, with the next
``seq``. Each worker polls the file (:data:`POLL_S`) and loads a new ``seq``; a worker whose
load fails keeps serving its current model, logs why and reports it in ``/ready``
(``reload_error``) and ``opsnb_reloads_total{outcome="refused"}``. A worker started later (a
replacement for one that died) loads the published version, so every worker serves the same
one. A single process without the folder simply reloads itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from opsnb.artifacts import atomic_open

POLL_S = 0.2
"""How often a worker looks for a new instruction."""
FILE = "model.json"


class Control:
    """The shared instruction file in ``folder`` (None: a single process, nothing shared)."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._stamp: tuple[int, int] | None = None

    @property
    def shared(self) -> bool:
        """Whether other processes follow this instruction file."""
        return self.folder is not None

    def read(self) -> tuple[int, str | None]:
        """The published (seq, version); (0, None) before anything was published."""
        if self.folder is None:
            return 0, None
        try:
            data = orjson.loads((self.folder / FILE).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return 0, None
        return int(data.get("seq", 0)), data.get("version")

    def changed(self) -> bool:
        """Cheap check (one stat) whether the file changed since the last call."""
        if self.folder is None:
            return False
        try:
            info = (self.folder / FILE).stat()
        except OSError:
            return False
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def publish(self, version: str | None) -> int:
        """Tell every worker to serve ``version`` (None: the configured one); return its seq."""
        if self.folder is None:
            return 0
        with self._locked():
            seq = self.read()[0] + 1
            with atomic_open(self.folder / FILE) as out:
                out.write(orjson.dumps({"seq": seq, "version": version}).decode())
        return seq

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        folder = self.folder or Path(".")
        fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
