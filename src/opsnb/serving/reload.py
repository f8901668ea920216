"""The model being served and its safe replacement.

A new bundle comes only from the model store (a version name, see
:mod:`opsnb.serving.store`) and takes traffic only after its signature was checked and its files
were verified against its manifest (both before its library is loaded), it was loaded, passed
its self-check on the bundle's golden rows and warmed up. A bundle that fails any step is
refused and the model being served keeps serving. Requests validated against the old model's
contract are still predicted by the old model, so a reload that changes the schema fails no
request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opsnb import predictor
from opsnb.bundle import VerifiedBundle, resolve_bundle, verify_bundle
from opsnb.errors import OpsnbError
from opsnb.schema import Schema
from opsnb.serving.contract import RequestContract
from opsnb.serving.store import ModelStore, Trust, escape

log = logging.getLogger(__name__)

RETIRE_AFTER_S = 60.0
"""How long a replaced model stays loaded for the requests it had admitted."""


@dataclass(frozen=True)
class ServedModel:
    """A loaded, checked and warmed model with the request contract of its schema."""

    model: predictor.CompiledModel
    contract: RequestContract
    bundle: Path
    output: str
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        """The model version (a prefix of the model file's SHA-256)."""
        return str(self.model.version)


def _typical_rows(schema: Schema, rows: int) -> np.ndarray:
    """Rows of mid-range values (category code 0), for warming the library up."""
    values = [
        0.0 if f.is_categorical or f.min is None or f.max is None else (f.min + f.max) / 2
        for f in schema.features
    ]
    return np.tile(np.asarray(values, dtype=np.float32), (rows, 1))


def verify(folder: Path, trust: Trust) -> VerifiedBundle:
    """Signature, then every file's hash: all before any native code of the bundle is loaded."""
    trust.check(folder)
    return verify_bundle(folder)


def prepare(
    bundle: VerifiedBundle | str | os.PathLike[str],
    *,
    trust: Trust | None = None,
    range_slack: float | None = 1.0,
    max_records: int = 1000,
    warm_rows: int = 64,
) -> ServedModel:
    """Verify, load, self-check and warm up a bundle; refuse it with an OpsnbError otherwise.

    ``bundle`` is a run or bundle folder (its signature checked against ``trust``, default
    :meth:`Trust.default`, and its files verified here, before any of its native code is
    loaded), or a :class:`~opsnb.bundle.VerifiedBundle` already verified that way: either way
    each file is hashed once and the golden rows are checked once.
    """
    verified = (
        bundle
        if isinstance(bundle, VerifiedBundle)
        else verify(resolve_bundle(bundle), trust or Trust.default())
    )
    model = predictor.load_bundle(verified, self_check=False)
    try:
        model.self_check()  # a served bundle must carry golden rows: no skipping it here
        for rows in (1, warm_rows, 1, warm_rows):
            model.predict(_typical_rows(model.schema, rows))
        contract = RequestContract(model.schema, range_slack=range_slack, max_records=max_records)
    except Exception:
        model.close()
        raise
    return ServedModel(
        model=model, contract=contract, bundle=verified.path, output=model.schema.output
    )


class ModelSlot:
    """Holds the served model; :meth:`reload` replaces it only with a model that passed.

    Args:
        store: where versions come from (a run or bundle folder given alone: its parent).
        trust: whose bundles load (default: :meth:`Trust.default`).
        verified: the configured version as the caller already verified it (signature and
            files, e.g. ``opsnb serve`` before it started): the first load uses it instead of
            hashing the files again; later reloads verify anew.
        options: keyword options of :func:`prepare`.
    """

    def __init__(
        self,
        store: ModelStore | str | os.PathLike[str],
        *,
        trust: Trust | None = None,
        verified: VerifiedBundle | None = None,
        **options: Any,
    ) -> None:
        self.store = store if isinstance(store, ModelStore) else ModelStore.serving(store)
        self._verified = verified
        self.trust = trust or Trust.default()
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._options = options
        self._lock = asyncio.Lock()

    def check(self, version: str | None = None) -> VerifiedBundle:
        """Resolve ``version`` in the store and verify it (trust, hashes); nothing is loaded.

        Raises:
            OpsnbError: the version is refused.
        """
        return verify(self.store.resolve(version), self.trust)

    async def reload(self, version: str | None = None) -> ServedModel:
        """Prepare ``version`` of the store (default: the configured one), then swap it in.

        The bundle is verified and prepared off the event loop.

        Raises:
            OpsnbError: the bundle was refused; the current model keeps serving.
        """
        shown = escape(version or self.store.default, 80)
        async with self._lock:
            try:
                if version is None and self._verified is not None:
                    verified, self._verified = self._verified, None
                else:
                    verified = await asyncio.to_thread(self.check, version)
                fresh = await asyncio.to_thread(prepare, verified, **self._options)
            except OpsnbError as exc:
                self.last_error = str(exc)
                log.error("refused model version %s: %s", shown, escape(exc, 400))
                raise
            except Exception as exc:  # a library failure while loading: refuse, keep serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("refused model version %s: %s", shown, escape(self.last_error, 400))
                raise OpsnbError(
                    f"model version {shown} could not be loaded: {self.last_error}"
                ) from exc
            old, self.current, self.last_error = self.current, fresh, None
            if old is not None:
                asyncio.get_running_loop().call_later(RETIRE_AFTER_S, old.model.close)
            log.info("serving model %s from %s", fresh.version, escape(fresh.bundle))
            return fresh

    def close(self) -> None:
        """Close the current model."""
        if self.current is not None:
            self.current.model.close()
