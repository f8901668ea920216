"""Bundle signatures: who built a bundle, checked before any of its native code is loaded.

A bundle's ``manifest.json`` seals every file by SHA-256; ``manifest.sig`` signs the manifest's
exact bytes with Ed25519 (the ``cryptography`` package)::

    {"key_id": "<first 16 hex digits of SHA-256 of the raw public key>",
     "signature": "<base64 of the 64-byte signature>"}

Every bundle opsnb builds is signed with the project key, created on first use at
:func:`opsnb.config.signing_key_path` (mode 0600, its folder 0700, outside every run folder).
``opsnb serve`` trusts that key's public half by default, plus the public keys (PEM files)
named by ``$OPSNB_TRUSTED_KEYS`` or ``--trust-key``. A bundle that is unsigned, signed by
another key, or whose manifest changed after signing is refused -- before any file it lists is
hashed, so a forged manifest learns nothing about files on the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from opsnb import config
from opsnb.artifacts import atomic_open
from opsnb.errors import ArtifactError, ConfigError

SIGNATURE = "manifest.sig"
MANIFEST = "manifest.json"
KEY_MODE = 0o600


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def project_key(path: str | os.PathLike[str] | None = None) -> Ed25519PrivateKey:
    """The project's private signing key; created (0600, folder 0700) when it does not exist.

    Raises:
        ConfigError: the key file exists but is not an unencrypted Ed25519 PEM private key.
    """
    target = Path(path) if path is not None else config.signing_key_path()
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, KEY_MODE)
        except FileExistsError:  # another process created it meanwhile: use theirs
            return project_key(target)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        return key
    try:
        loaded = serialization.load_pem_private_key(target.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"signing key {target} is not an unencrypted PEM private key ({exc}); move it away "
            f"and a new one is created, or point ${config.SIGNING_KEY_ENV} at the right file"
        ) from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(
            f"signing key {target} is a {type(loaded).__name__}; opsnb signs with Ed25519 keys"
        )
    return loaded


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The PEM text of ``key``'s public half (what another server adds with --trust-key)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_bundle(bundle_dir: str | os.PathLike[str], key: Ed25519PrivateKey | None = None) -> Path:
    """Sign ``bundle_dir/manifest.json`` (default key: the project key); return the signature."""
    folder = Path(bundle_dir)
    private = key or project_key()
    signature = private.sign((folder / MANIFEST).read_bytes())
    document = {
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(signature).decode(),
    }
    with atomic_open(folder / SIGNATURE) as out:
        out.write(json.dumps(document, indent=2) + "\n")
    return folder / SIGNATURE


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        ConfigError: the file is missing or holds no Ed25519 public key.
    """
    try:
        loaded = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"trusted key {path} cannot be read as a PEM public key ({exc}); export one with "
            "'opsnb key' on the machine that builds the bundles"
        ) from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise ConfigError(f"trusted key {path} is a {type(loaded).__name__}, not Ed25519")
    return loaded


def trusted_keys(
    extra: Iterable[str | os.PathLike[str]] = (), *, project: bool = True
) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key of every trusted key.

    The project key (unless ``project`` is False, or this machine has none: verifying never
    creates one), the files in ``$OPSNB_TRUSTED_KEYS`` and ``extra``.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    if project and config.signing_key_path().is_file():
        public = project_key().public_key()
        keys[key_id(public)] = public
    listed = [p for p in os.environ.get(config.TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]
    for path in [*listed, *extra]:
        public = load_public_key(path)
        keys[key_id(public)] = public
    return keys


def verify_signature(
    bundle_dir: str | os.PathLike[str], keys: Mapping[str, Ed25519PublicKey]
) -> str:
    """Check ``manifest.sig`` against ``manifest.json``; return the signing key's id.

    Reads only those two files: nothing the manifest lists is touched before it is trusted.

    Raises:
        ArtifactError: the bundle is unsigned, signed by an untrusted key, or the signature
            does not match the manifest (it changed after signing).
    """
    folder = Path(bundle_dir)
    sig_path = folder / SIGNATURE
    if not sig_path.is_file():
        raise ArtifactError(
            f"bundle {folder} is not signed ({SIGNATURE} is missing); rebuild it with opsnb, "
            "or serve it with --allow-unsigned if you trust its origin",
            path=SIGNATURE,
        )
    try:
        document = json.loads(sig_path.read_bytes())
        kid = str(document["key_id"])
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ArtifactError(
            f"{SIGNATURE} of bundle {folder} is unreadable ({type(exc).__name__}); rebuild it",
            path=SIGNATURE,
        ) from exc
    public = keys.get(kid)
    if public is None:
        raise ArtifactError(
            f"bundle {folder} is signed by key {kid[:16]!r}, which this server does not trust "
            f"(trusted: {', '.join(sorted(keys)) or 'none'}); add its public key with "
            f"--trust-key or ${config.TRUSTED_KEYS_ENV}",
            path=SIGNATURE,
        )
    try:
        public.verify(signature, (folder / MANIFEST).read_bytes())
    except InvalidSignature as exc:
        raise ArtifactError(
            f"the signature of bundle {folder} does not match its {MANIFEST}: the manifest "
            "changed after it was signed; refusing it (rebuild the bundle)",
            path=SIGNATURE,
        ) from exc
    return kid
