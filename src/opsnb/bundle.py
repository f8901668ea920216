"""The bundle: its layout, its manifest, and verifying it before anything of it is loaded.

A bundle is a folder the operationalize stage writes and the predictor, the server and the bench
read::

    model.so        the compiled library (native code: loaded only after its hash matched)
    model.h         the C header of its entry points
    model-src.zip   the C sources with a Makefile and CMakeLists (builds without Python)
    schema.json     the frozen input contract (:class:`~opsnb.schema.Schema`)
    golden.json     golden edge rows with their expected outputs (re-checked at every load)
    manifest.json   every file's SHA-256, the model's hash, compile facts, parity reports
    manifest.sig    the manifest's Ed25519 signature (:mod:`opsnb.signing`; checked first)

:func:`write_manifest` seals the files (the compiler calls it last); :func:`verify_bundle` checks
every sealed file once and returns a :class:`VerifiedBundle`: the hashes it checked, the parsed
schema and golden rows (parsed from the very bytes that were hashed, so they cannot change
between check and use). The library is the one file loaded later by path: the predictor copies
it to a fresh private path and checks the copy against :attr:`VerifiedBundle.hashes` with
:meth:`VerifiedBundle.check_copy` right before ``dlopen``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsnb import signing
from opsnb.artifacts import sha256_bytes, sha256_file, write_json
from opsnb.errors import ArtifactError, SchemaError
from opsnb.schema import Schema

LIBRARY = "model.so"
HEADER = "model.h"
SOURCES = "model-src.zip"
SCHEMA = "schema.json"
GOLDEN = "golden.json"
MANIFEST = "manifest.json"
REFERENCE = "reference.json"
CHECKER = "checker.json"
MONITOR_FILES = (REFERENCE, CHECKER)
"""Written by the operationalize stage after the compiler (see :func:`add_files`): the training
reference and the second-opinion checker the monitor reads, so it needs no training data."""
FILES = (LIBRARY, HEADER, SOURCES, SCHEMA, GOLDEN)
"""Every file the manifest seals, in the order it lists them."""
REQUIRED = (LIBRARY, SCHEMA)
"""Files a bundle cannot be served without (older bundles may lack ``golden.json``)."""
_PARSED = (SCHEMA, GOLDEN)
"""Small files read into memory once: hashed and parsed from the same bytes."""


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every sealed file matched ``manifest.json`` when it was verified.

    Attributes:
        path: the bundle folder (symbolic links resolved).
        manifest: the parsed ``manifest.json``.
        hashes: file name -> the SHA-256 that was checked.
        schema: the parsed ``schema.json`` (from the bytes that were hashed).
        golden: the parsed ``golden.json`` (from the bytes that were hashed), or ``None`` for
            a bundle built without one.
    """

    path: Path
    manifest: Mapping[str, Any]
    hashes: Mapping[str, str]
    schema: Schema
    golden: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """The model version: the first 12 hex digits of the model file's SHA-256."""
        return str(self.manifest["model_sha256"])[:12]

    @property
    def library(self) -> Path:
        """The compiled library's path in the bundle (load a checked private copy, not this)."""
        return self.path / LIBRARY

    def check_copy(self, name: str, copy: str | os.PathLike[str]) -> None:
        """Check that ``copy`` (e.g. the library's private copy) has the verified hash of ``name``.

        Raises:
            ArtifactError: the copy differs (the original changed after it was verified).
        """
        _check(self.path, name, self.hashes[name], sha256_file(copy))


def write_manifest(bundle_dir: str | os.PathLike[str], **facts: Any) -> dict[str, Any]:
    """Seal the bundle's files: write ``manifest.json`` with every file's SHA-256 and ``facts``.

    ``facts`` are recorded as given (the compiler passes ``model_sha256``, ``num_feature``,
    ``compile``, ``parity`` and ``versions``); ``model_sha256`` is required, it names the
    model version. Returns the manifest.

    Raises:
        ArtifactError: a bundle file is missing, or ``model_sha256`` was not given.
    """
    bundle = Path(bundle_dir)
    if "model_sha256" not in facts:
        raise ArtifactError(
            "a bundle manifest needs model_sha256 (the model version)", path=MANIFEST
        )
    missing = [name for name in FILES if not (bundle / name).is_file()]
    if missing:
        raise ArtifactError(
            f"cannot seal {bundle}: {', '.join(missing)} missing; write every bundle file "
            f"({', '.join(FILES)}) before the manifest",
            path=missing[0],
        )
    manifest = {"files": {name: sha256_file(bundle / name) for name in FILES}, **facts}
    write_json(bundle / MANIFEST, manifest)
    return manifest


def add_files(bundle_dir: str | os.PathLike[str], files: Mapping[str, Any]) -> dict[str, Any]:
    """Write JSON ``files`` (name -> object) into a sealed bundle and seal them in its manifest.

    The monitor's ``reference.json`` and ``checker.json`` travel this way: computed from the
    served library's own predictions once the bundle exists, hashed like every other file.

    Raises:
        ArtifactError: a name is not a new top-level ``.json`` file of the bundle.
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    for name, obj in files.items():
        if "/" in name or name in (*FILES, MANIFEST) or not name.endswith(".json"):
            raise ArtifactError(
                f"cannot add {name!r} to a bundle: expected a new top-level .json file name "
                f"(not one of {', '.join((*FILES, MANIFEST))})",
                path=name,
            )
        write_json(bundle / name, obj)
        manifest["files"][name] = sha256_file(bundle / name)
    write_json(bundle / MANIFEST, manifest)
    if (bundle / signing.SIGNATURE).is_file():
        # The signature covers the manifest just rewritten: sign it again with the project key,
        # or the bundle opsnb built would be refused as tampered.
        signing.sign_bundle(bundle)
    return manifest


def read_manifest(bundle_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return ``manifest.json`` of a bundle, checked to seal the required files (no hashing).

    Raises:
        ArtifactError: the manifest is missing, unreadable or does not seal a required file.
    """
    bundle = Path(bundle_dir)
    path = bundle / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{bundle} is not a bundle: {MANIFEST} is missing", path=MANIFEST)
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ArtifactError(
            f"{path} is not valid JSON ({exc}); rebuild the bundle", path=MANIFEST
        ) from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ArtifactError(f"{path} has no 'files' table; rebuild the bundle", path=MANIFEST)
    for name in REQUIRED:
        if name not in files:
            raise ArtifactError(
                f"{path} lists no {name}; a bundle must seal it: rebuild the bundle", path=name
            )
    if "model_sha256" not in manifest:
        raise ArtifactError(f"{path} has no model_sha256; rebuild the bundle", path=MANIFEST)
    result: dict[str, Any] = manifest
    return result


def verify_bundle(bundle_dir: str | os.PathLike[str]) -> VerifiedBundle:
    """Check every file ``manifest.json`` seals against its SHA-256, once; nothing is loaded.

    ``schema.json`` and ``golden.json`` are read once, hashed and parsed from the same bytes.

    Raises:
        ArtifactError: the manifest is missing or incomplete, or a file is missing or differs.
        SchemaError: ``schema.json`` is sealed but is not a valid schema.
    """
    bundle = Path(bundle_dir).expanduser().resolve()
    manifest = read_manifest(bundle)
    files: dict[str, str] = manifest["files"]
    contents: dict[str, bytes] = {}
    for name, expected in files.items():
        target = bundle / name
        if not target.is_file():
            raise ArtifactError(f"bundle file {name} is missing from {bundle}", path=name)
        if name in _PARSED:
            contents[name] = target.read_bytes()
            actual = sha256_bytes(contents[name])
        else:
            actual = sha256_file(target)
        _check(bundle, name, expected, actual)
    try:
        schema = Schema.from_dict(json.loads(contents[SCHEMA]), where=str(bundle / SCHEMA))
    except ValueError as exc:
        raise SchemaError(
            f"{bundle / SCHEMA} is not valid JSON ({exc}); rebuild the bundle"
        ) from exc
    golden = json.loads(contents[GOLDEN]) if GOLDEN in contents else None
    return VerifiedBundle(bundle, manifest, dict(files), schema, golden)


def resolve_bundle(path: str | os.PathLike[str]) -> Path:
    """Return the bundle folder for a run folder (``runs/<id>``) or a bundle folder itself.

    Symbolic links are resolved now, so serving ``runs/latest`` and reloading later picks up
    the run that ``latest`` points at then.

    Raises:
        ArtifactError: ``path`` holds no bundle.
    """
    folder = Path(path).expanduser().resolve()
    if (folder / "bundle" / MANIFEST).is_file():
        return folder / "bundle"
    if (folder / MANIFEST).is_file():
        return folder
    raise ArtifactError(
        f"{path} is neither a run folder with bundle/{MANIFEST} nor a bundle folder; "
        "run the pipeline through 'operationalize' first (opsnb run --until operationalize)",
        path=str(path),
    )


def _check(bundle: Path, name: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise ArtifactError(
            f"bundle file {name} does not match {MANIFEST}: sha256 {actual[:12]}… "
            f"expected {expected[:12]}…; refusing to load it (rebuild the bundle)",
            path=name,
        )
