"""Where the service may load models from, and whose models it trusts.

The model store is one folder given at start (``--store``; default: the folder holding the
served run or bundle, e.g. ``runs/``). A reload names a version in it -- a run id such as
``latest`` or ``20260101-1200-ab12``, or a bundle folder's name -- never a path: a name with a
path separator or ``..``, or one whose folder (symbolic links followed) lies outside the store,
is refused before anything in it is read.

Before any file of a bundle is hashed or loaded, :class:`Trust` checks ``manifest.sig`` (see
:mod:`opsnb.signing`) and that every file the manifest lists is a plain name in the bundle
folder. ``allow_unsigned`` (``--allow-unsigned``) skips the signature, for bundles the operator
vouches for; the rest of the checks stay.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from opsnb import signing
from opsnb.errors import ArtifactError, ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def escape(value: object, limit: int = 200) -> str:
    """``value`` as a log-safe string: control characters escaped, at most ``limit`` chars."""
    text = str(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("unicode_escape").decode("ascii")


def bundle_in(folder: Path) -> Path | None:
    """The bundle of a run folder (``bundle/``) or of a bundle folder; None if it holds none."""
    if (folder / "bundle" / "manifest.json").is_file():
        return folder / "bundle"
    if (folder / "manifest.json").is_file():
        return folder
    return None


@dataclass(frozen=True)
class ModelStore:
    """The folder models are loaded from; :meth:`resolve` turns a version name into a bundle.

    Args:
        root: the store folder.
        default: the version served at start and reloaded by SIGHUP (e.g. ``latest``).
    """

    root: Path
    default: str

    @classmethod
    def serving(cls, served: str | os.PathLike[str], store: str | None = None) -> ModelStore:
        """The store for ``opsnb serve served [--store store]``.

        Without ``store``, the folder holding ``served`` (``runs/latest`` -> ``runs/``, version
        ``latest``). With it, ``served`` is a version name in it or a path inside it.

        Raises:
            ConfigError: ``served`` is not in the store.
        """
        path = Path(served).expanduser()
        if store is None:
            absolute = path.absolute()
            return cls(absolute.parent.resolve(), absolute.name)
        root = Path(store).expanduser().resolve()
        if path.parent == Path() and _NAME.fullmatch(path.name):
            return cls(root, path.name)
        absolute = path.absolute()
        if absolute.parent.resolve() != root:
            raise ConfigError(
                f"{served} is not a version in the model store {root}; serve a folder directly "
                "inside it, or name the version"
            )
        return cls(root, absolute.name)

    def resolve(self, name: str | None = None) -> Path:
        """The bundle folder of version ``name`` (default: :attr:`default`).

        Raises:
            ArtifactError: the name is not a plain version name, its folder is outside the
                store or holds no bundle.
        """
        version = self.default if name is None else name
        if type(version) is not str or not _NAME.fullmatch(version):
            raise ArtifactError(
                f"model version {escape(version, 80)!r} is not a name in the model store "
                f"{self.root} (letters, digits, '.', '_', '-'; no paths); reload names a "
                "version, e.g. a run id",
                path=escape(version, 80),
            )
        root = self.root.resolve()
        folder = (root / version).resolve()
        if not folder.is_relative_to(root) or folder == root:
            raise ArtifactError(
                f"model version {version!r} leads outside the model store {root}; refusing it "
                "(copy the bundle into the store)",
                path=version,
            )
        bundle = bundle_in(folder)
        if bundle is None:
            raise ArtifactError(
                f"model version {version!r} in {root} is neither a run folder with "
                "bundle/manifest.json nor a bundle folder; run the pipeline through "
                "'operationalize' first",
                path=version,
            )
        return bundle


@dataclass(frozen=True)
class Trust:
    """Whose bundles the service loads.

    Args:
        keys: key id -> trusted public key (see :func:`opsnb.signing.trusted_keys`).
        allow_unsigned: load bundles without a valid signature (the operator vouches).
    """

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    allow_unsigned: bool = False

    @classmethod
    def default(cls, extra: tuple[str, ...] = (), *, allow_unsigned: bool = False) -> Trust:
        """The project key, ``$OPSNB_TRUSTED_KEYS`` and ``extra`` key files."""
        return cls(signing.trusted_keys(extra), allow_unsigned)

    def check(self, bundle: Path) -> None:
        """Refuse ``bundle`` unless its signature is trusted and its manifest names plain files.

        Reads only ``manifest.json`` and ``manifest.sig``; call before hashing or loading.

        Raises:
            ArtifactError: unsigned, untrusted or broken signature; a listed file is not a
                plain name in the bundle folder.
        """
        if not self.allow_unsigned:
            signing.verify_signature(bundle, self.keys)
        try:
            manifest = orjson.loads((bundle / "manifest.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ArtifactError(
                f"manifest.json of {bundle} is unreadable ({type(exc).__name__}); rebuild it",
                path="manifest.json",
            ) from exc
        files = manifest.get("files") if type(manifest) is dict else None
        for name in files if type(files) is dict else ():
            if not _NAME.fullmatch(name):
                raise ArtifactError(
                    f"manifest.json of {bundle} lists {escape(name, 80)!r}, which is not a "
                    "file of the bundle folder; refusing the bundle (rebuild it)",
                    path="manifest.json",
                )
