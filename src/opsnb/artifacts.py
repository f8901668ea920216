"""Atomic writes, content hashes, and the run manifest that seals every artifact.

An artifact is a file inside a run folder, named by its path relative to that folder. A stage
writes it atomically (temporary file, fsync, rename) and then *seals* it: its SHA-256 goes into
``manifest.json``. A later stage reads it only through :meth:`RunManifest.verify`, which refuses
a file that is missing, was never sealed, or whose bytes changed since (challenge 7: no metric is
computed on a model that is not finished).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from opsnb import config
from opsnb.errors import ArtifactError

if TYPE_CHECKING:  # pandas loads only when a Parquet file is written (not in a server process)
    import pandas as pd

MANIFEST = "manifest.json"
_MANIFEST_ORDER = ("run_id", "status", "created", "updated", "report", "problem", "stages")
"""Keys a person reads first; every other key follows, and the artifacts' hashes come last."""
_CHUNK = 1 << 20


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string with seconds precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Return the SHA-256 of ``obj`` in canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode())


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    A reader never sees a half-written file, and a failure leaves the old file untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers (XGBoost's save_model) choose the format from it.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, config.ARTIFACT_MODE)  # mkstemp made it 0600: readable by the owner only
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that atomically replaces ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = True) -> Path:
    """Atomically write ``obj`` as indented JSON (keys sorted unless told not); return the path."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=sort_keys, default=str)
        handle.write("\n")
    return Path(path)


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Atomically write ``frame`` as Parquet; return the path."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class RunManifest:
    """The ``manifest.json`` of one run: stage records and sealed artifacts.

    Each method that changes it saves it at once (atomically), so the file on disk is always the
    last consistent state.
    """

    run_dir: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> RunManifest:
        """Load the manifest of ``run_dir``, or start an empty one if there is none yet."""
        folder = Path(run_dir)
        path = folder / MANIFEST
        data = read_json(path) if path.is_file() else {}
        data.setdefault("run_id", folder.name)
        data.setdefault("created", now_iso())
        data.setdefault("status", "new")
        data.setdefault("stages", {})
        data.setdefault("artifacts", {})
        return cls(folder, data)

    def save(self) -> None:
        """Write the manifest atomically: the run first, then stages in run order, hashes last."""
        front = [k for k in _MANIFEST_ORDER if k in self.data]
        rest = [k for k in self.data if k not in (*_MANIFEST_ORDER, "artifacts")]
        ordered = {k: self.data[k] for k in [*front, *rest]}
        ordered["artifacts"] = dict(sorted(self.data["artifacts"].items()))
        write_json(self.run_dir / MANIFEST, ordered, sort_keys=False)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Stage records by stage name."""
        records: dict[str, dict[str, Any]] = self.data["stages"]
        return records

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        """Sealed artifacts by path relative to the run folder."""
        sealed: dict[str, dict[str, Any]] = self.data["artifacts"]
        return sealed

    def seal(self, relpath: str, *, stage: str) -> str:
        """Record the SHA-256 of the artifact at ``relpath`` as produced by ``stage``; return it."""
        path = self.run_dir / relpath
        if not path.is_file():
            raise ArtifactError(
                f"cannot seal '{relpath}': no such file in {self.run_dir}; "
                f"stage '{stage}' must write it before sealing",
                path=relpath,
            )
        digest = sha256_file(path)
        self.artifacts[relpath] = {
            "sha256": digest,
            "bytes": path.stat().st_size,
            "stage": stage,
            "sealed_at": now_iso(),
        }
        self.save()
        return digest

    def verify(self, relpath: str) -> Path:
        """Return the path of a sealed artifact whose bytes still match its recorded hash.

        Raises:
            ArtifactError: the file is missing, was never sealed, or was changed since sealing.
        """
        path = self.run_dir / relpath
        record = self.artifacts.get(relpath)
        if not path.is_file():
            raise ArtifactError(
                f"input '{relpath}' is missing from run folder {self.run_dir}; "
                "run the stage that produces it first",
                path=relpath,
            )
        if record is None:
            raise ArtifactError(
                f"input '{relpath}' exists but was never sealed in {MANIFEST}; "
                "it may be a partial output of a failed stage; re-run the stage that produces it",
                path=relpath,
            )
        actual = sha256_file(path)
        if actual != record["sha256"]:
            raise ArtifactError(
                f"input '{relpath}' was modified after it was sealed: sha256 {actual[:12]}… "
                f"but {MANIFEST} recorded {record['sha256'][:12]}…; "
                f"re-run stage '{record['stage']}' to rebuild it",
                path=relpath,
            )
        return path

    def unseal_stage(self, stage: str) -> list[str]:
        """Forget every artifact sealed by ``stage`` (its outputs no longer count); return them."""
        dropped = [rel for rel, rec in self.artifacts.items() if rec["stage"] == stage]
        for rel in dropped:
            del self.artifacts[rel]
        self.save()
        return dropped
