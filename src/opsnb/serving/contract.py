"""The serving side of the frozen schema contract: JSON request bodies -> float32 model rows.

Written directly against the bundle's :class:`~opsnb.schema.Schema` (each feature's name, kind,
nullable, min, max, categories) so one record costs a few microseconds. Every refusal is a
:class:`~opsnb.errors.RequestError` whose ``status`` follows one mapping, :data:`STATUSES`
(the error body's ``error`` field and the OpenAPI document come from it too):

==========  ===================================================================
status      cause
==========  ===================================================================
400         the body is not JSON (syntax, encoding, nesting deeper than 1024), or an
            object repeats a key (JSON parsers disagree on which one wins)
401         a token is configured and the request lacks it (``/feedback``)
404         an unknown request id (``/feedback``)
408         the body did not arrive within ``--body-timeout-s``
409         the request id already has a label (``/feedback``)
413         the body or its number of records is over the limit
415         the media type is not ``application/json``, or the body is compressed
422         JSON that breaks the contract: shape, missing or unknown fields,
            wrong types, null where the feature is required, values outside
            float32 or the allowed range, unknown categories, empty lists
503         not ready, or over the latency budget (answered with Retry-After)
==========  ===================================================================

The allowed range of a numeric feature is the training range widened by ``range_slack`` times
its span on each side (``None`` allows any float32). JSON has no NaN or Infinity, so a missing
value is ``null`` and is accepted only where the schema marks the feature nullable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from opsnb.errors import RequestError
from opsnb.schema import FLOAT32_MAX, Feature, Schema

STATUSES: dict[int, tuple[str, str]] = {
    400: ("syntax", "The body is not JSON"),
    401: ("unauthorized", "A bearer token is needed (feedback or admin)"),
    404: ("unknown_id", "No prediction has this request id"),
    408: ("slow_body", "The body did not arrive within the body timeout"),
    409: ("label_exists", "The request already has a label; the first one stands"),
    413: ("size", "The body or its number of records is over the limit"),
    415: ("media_type", "The media type is not application/json"),
    422: (
        "contract",
        "The JSON breaks the input contract (the message names record, field and value)",
    ),
    503: ("overload", "Not ready, or over the latency budget (see Retry-After)"),
}
"""What each refusal status means: HTTP status -> (the error body's ``error`` kind, the cause)."""


def error_kind(status: int) -> str:
    """The ``error`` kind of a refusal with HTTP ``status`` (``client`` for one not listed)."""
    return STATUSES[status][0] if status in STATUSES else "client"


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}
_SHOWN_CATEGORIES = 10


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()  # in JSON spelling: true, null, "text"
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(record: int, field: str, value: Any, expected: str) -> RequestError:
    return RequestError(
        f"record {record}: field {field!r} = {_show(value)} ({_json_type(value)}); "
        f"expected {expected}",
        status=422,
        record=record,
        field=field,
    )


def allowed_range(feature: Feature, range_slack: float | None) -> tuple[float, float]:
    """The values a numeric feature accepts: its training range widened by ``range_slack`` spans.

    The span counts as at least 1, so a feature seen with one value still accepts its
    neighbours; ``range_slack=None`` accepts every finite float32.
    """
    lo, hi = -FLOAT32_MAX, FLOAT32_MAX
    if range_slack is not None and feature.min is not None and feature.max is not None:
        span = max(feature.max - feature.min, 1.0)
        lo = max(lo, feature.min - range_slack * span)
        hi = min(hi, feature.max + range_slack * span)
    return lo, hi


def _numeric_check(feature: Feature, range_slack: float | None) -> Callable[[Any, int], float]:
    name, nullable = feature.name, feature.nullable
    lo, hi = allowed_range(feature, range_slack)
    wanted = f"a number in [{lo:.6g}, {hi:.6g}]" + (" or null" if nullable else "")

    def check(value: Any, record: int) -> float:
        kind = type(value)
        if kind is float or kind is int:
            if lo <= value <= hi:
                return float(value)
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise _refuse(
                    record,
                    name,
                    value,
                    f"{wanted}: it is outside the float32 range the compiled model reads",
                )
            raise _refuse(
                record,
                name,
                value,
                f"{wanted} (training range widened by range_slack={range_slack})",
            )
        if value is None and nullable:
            return math.nan
        raise _refuse(record, name, value, wanted)

    return check


def _categorical_check(feature: Feature) -> Callable[[Any, int], float]:
    name, nullable = feature.name, feature.nullable
    codes = {str(c): float(i) for i, c in enumerate(feature.categories)}
    listed = ", ".join(orjson.dumps(c).decode() for c in list(codes)[:_SHOWN_CATEGORIES])
    more = f" (+{len(codes) - _SHOWN_CATEGORIES} more)" if len(codes) > _SHOWN_CATEGORIES else ""
    wanted = f"one of {listed}{more}" + (" or null" if nullable else "")

    def check(value: Any, record: int) -> float:
        if type(value) is str:
            code = codes.get(value)
            if code is not None:
                return code
            raise _refuse(record, name, value, f"{wanted}: unknown category")
        if value is None and nullable:
            return math.nan
        raise _refuse(record, name, value, wanted)

    return check


_KEY = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:')
"""An object key in JSON text: a string followed by a colon (only keys are)."""


def _count_keys(data: Any) -> int:
    if type(data) is dict:
        return len(data) + sum(_count_keys(v) for v in data.values() if type(v) in (dict, list))
    if type(data) is list:
        return sum(_count_keys(v) for v in data if type(v) in (dict, list))
    return 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RequestError(
                f"request body repeats the key {_show(key)} in one object; send each field "
                "once (parsers disagree on which repeated value wins)",
                status=400,
                field=key[:60],
            )
        seen[key] = value
    return seen


def _loads(body: bytes) -> Any:
    """Parse JSON; refuse syntax errors and objects that repeat a key (400)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}", status=400) from exc
    # orjson keeps the last of repeated keys silently: the text holding more keys than the
    # parsed objects means one repeats; the standard parser then names it.
    if len(_KEY.findall(body)) != _count_keys(data):
        json.loads(body, object_pairs_hook=_no_duplicates)
    return data


def parse_feedback(body: bytes, *, task: str = "regression") -> tuple[str, float]:
    """Return (request id, label) of a ``/feedback`` body ``{"request_id": str, "label": num}``.

    A binary model's label is 0 or 1; a regression label any finite number.

    Raises:
        RequestError: 400 for broken JSON, 422 for any other shape or a label the task cannot
            have.
    """
    data = _loads(body)
    if type(data) is not dict or data.keys() != {"request_id", "label"}:
        raise RequestError(
            f"feedback body {_show(data)} is not an object with exactly the fields "
            '"request_id" (a string) and "label" (a number)',
            status=422,
        )
    rid, label = data["request_id"], data["label"]
    if type(rid) is not str or not rid:
        raise _refuse(0, "request_id", rid, "the non-empty string a /predict answer returned")
    if type(label) not in (int, float) or not math.isfinite(label):
        raise _refuse(0, "label", label, "a finite number (the observed ground truth)")
    if task == "binary" and label not in (0, 1):
        raise _refuse(0, "label", label, "0 or 1 (the observed class of a binary model)")
    if abs(label) > FLOAT32_MAX:
        raise _refuse(0, "label", label, "a number within the float32 range")
    return rid, float(label)


class RequestContract:
    """Parse and validate ``/predict`` bodies against a bundle's ``schema.json``.

    Args:
        schema: the bundle's schema.
        range_slack: how far past the training range a numeric value may go, in spans.
        max_records: most records one request may hold (more is answered 413).
    """

    def __init__(
        self, schema: Schema, *, range_slack: float | None = 1.0, max_records: int = 1000
    ) -> None:
        self.names = schema.feature_names
        self.schema = schema
        self.range_slack = range_slack
        self.max_records = max_records
        self._keys = frozenset(self.names)
        self._checks = [
            (f.name, _categorical_check(f) if f.is_categorical else _numeric_check(f, range_slack))
            for f in schema.features
        ]

    def parse(self, body: bytes) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Return the float32 rows (schema order) and the records of one request body.

        Raises:
            RequestError: the body is not JSON (400), holds too many records (413) or breaks
                the contract (422); the message names the record, the field and the value.
        """
        data = _loads(body)
        records = data if type(data) is list else [data]
        if type(data) is not list and type(data) is not dict:
            raise RequestError(
                f"request body is {_json_type(data)}; expected a record object keyed by "
                "feature name, or a non-empty array of them",
                status=422,
            )
        if not records:
            raise RequestError(
                "request body is an empty array; expected at least one record", status=422
            )
        if len(records) > self.max_records:
            raise RequestError(
                f"request holds {len(records)} records; at most {self.max_records} are "
                "accepted per request (split it)",
                status=413,
            )
        rows = np.empty((len(records), len(self.names)), dtype=np.float32)
        for i, record in enumerate(records):
            self._check_keys(record, i)
            row = rows[i]
            for j, (name, check) in enumerate(self._checks):
                row[j] = check(record[name], i)
        return rows, records

    def _check_keys(self, record: Any, index: int) -> None:
        if type(record) is not dict:
            raise RequestError(
                f"record {index} is {_json_type(record)}; expected an object keyed by feature name",
                status=422,
                record=index,
            )
        if record.keys() == self._keys:
            return
        missing = [n for n in self.names if n not in record]
        unknown = [str(k) for k in record if k not in self._keys]
        parts = []
        if missing:
            parts.append(f"lacks field(s) {', '.join(map(repr, missing))}")
        if unknown:
            shown = ", ".join(repr(k[:40]) for k in unknown[:5])
            parts.append(f"has unknown field(s) {shown}" + ("..." if len(unknown) > 5 else ""))
        raise RequestError(
            f"record {index} {' and '.join(parts)}; expected exactly the fields "
            f"{', '.join(self.names)} (nullable ones as null)",
            status=422,
            record=index,
            field=(missing or unknown)[0],
        )
