"""The one exception hierarchy of opsnb.

Every error a user can see derives from :class:`OpsnbError` and says what is wrong, the value
that was found, what was expected and, where there is one, the fix.
"""

from __future__ import annotations


class OpsnbError(Exception):
    """Base class of every error opsnb raises on purpose."""


class ConfigError(OpsnbError):
    """A parameter, option or environment setting is wrong."""


class DataError(OpsnbError):
    """An input data set cannot be used (missing, empty, unreadable, wrong shape)."""


class SchemaError(DataError):
    """Data breaks the frozen schema contract.

    Attributes:
        column: the offending column, when one is known.
    """

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class ArtifactError(OpsnbError):
    """An artifact is missing, unsealed, or does not match its recorded hash.

    Attributes:
        path: the artifact's path relative to the run folder.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StageError(OpsnbError):
    """A pipeline stage failed or cannot start.

    Attributes:
        stage: the stage's name.
        run_id: the run the stage belongs to, when known.
    """

    def __init__(self, message: str, *, stage: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.run_id = run_id


class CompileError(OpsnbError):
    """A model could not be compiled into a shared library."""


class ParityError(OpsnbError):
    """Compiled predictions differ from the reference beyond the tolerance."""


class RequestError(OpsnbError):
    """A request to the prediction service breaks the serving contract.

    Attributes:
        status: the HTTP status it is answered with (400 syntax, 413 size, 415 media type,
            422 contract).
        record: the index of the offending record in the request, when one is known.
        field: the offending field, when one is known.
        kind: the error kind answered and counted (``opsnb_errors_total{kind}``); by default
            the status decides (e.g. 413 ``size``), a 503 names its cause (``overload``,
            ``not_ready``, ``log_unavailable``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        record: int | None = None,
        field: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.record = record
        self.field = field
        self.kind = kind
