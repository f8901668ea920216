"""The model being served and its safe replacement.

A new bundle takes traffic only after it was verified against its manifest (before its library
is loaded), loaded, passed its self-check on the bundle's golden rows and warmed up. A bundle
that fails any step is refused and the model being served keeps serving. Requests validated
against the old model's contract are still predicted by the old model, so a reload that
changes the schema fails no request.
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


def prepare(
    bundle: VerifiedBundle | str | os.PathLike[str],
    *,
    range_slack: float | None = 1.0,
    max_records: int = 1000,
    warm_rows: int = 64,
) -> ServedModel:
    """Verify, load, self-check and warm up a bundle; refuse it with an OpsnbError otherwise.

    ``bundle`` is a run or bundle folder (verified here, before any of its native code is
    loaded), or a :class:`~opsnb.bundle.VerifiedBundle` already verified: either way each file
    is hashed once and the golden rows are checked once.
    """
    verified = (
        bundle if isinstance(bundle, VerifiedBundle) else verify_bundle(resolve_bundle(bundle))
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
        bundle: the run or bundle folder to serve (re-resolved at each reload).
        verified: the source already verified (by ``opsnb serve`` before it started): the
            first load uses it instead of hashing the files again; later reloads verify anew.
        options: keyword options of :func:`prepare`.
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        *,
        verified: VerifiedBundle | None = None,
        **options: Any,
    ) -> None:
        self.source = Path(bundle)
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._verified = verified
        self._options = options
        self._lock = asyncio.Lock()

    async def reload(self, bundle: str | os.PathLike[str] | None = None) -> ServedModel:
        """Prepare ``bundle`` (default: the configured source) off the event loop and swap it in.

        Raises:
            OpsnbError: the new bundle was refused; the current model keeps serving.
        """
        async with self._lock:
            target: VerifiedBundle | str | os.PathLike[str] = bundle or self.source
            if bundle is None and self._verified is not None:
                target, self._verified = self._verified, None
            try:
                fresh = await asyncio.to_thread(prepare, target, **self._options)
            except OpsnbError as exc:
                self.last_error = str(exc)
                log.error("refused bundle %s: %s", bundle or self.source, exc)
                raise
            except Exception as exc:  # a library failure while loading: refuse, keep serving
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("refused bundle %s", bundle or self.source)
                raise OpsnbError(
                    f"bundle {bundle or self.source} could not be loaded: {self.last_error}"
                ) from exc
            old, self.current, self.last_error = self.current, fresh, None
            if old is not None:
                asyncio.get_running_loop().call_later(RETIRE_AFTER_S, old.model.close)
            log.info("serving model %s from %s", fresh.version, fresh.bundle)
            return fresh

    def close(self) -> None:
        """Close the current model."""
        if self.current is not None:
            self.current.model.close()
