"""The service's OpenAPI document, its request schema generated from the bundle's schema.json."""

from __future__ import annotations

from typing import Any

from opsnb.schema import Feature
from opsnb.serving.contract import STATUSES, RequestContract, allowed_range


def _feature_schema(feature: Feature, range_slack: float | None) -> dict[str, Any]:
    nullable = feature.nullable
    if feature.is_categorical:
        spec: dict[str, Any] = {
            "type": ["string", "null"] if nullable else "string",
            "enum": [*feature.categories, *([None] if nullable else [])],
        }
    else:
        lo, hi = allowed_range(feature, range_slack)
        spec = {"type": ["number", "null"] if nullable else "number", "minimum": lo, "maximum": hi}
    return spec


def document(contract: RequestContract, *, version: str, max_body: int) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for the model served under ``contract``."""
    features = contract.schema.features
    record = {
        "type": "object",
        "additionalProperties": False,
        "required": contract.names,
        "properties": {f.name: _feature_schema(f, contract.range_slack) for f in features},
    }
    error = {
        "type": "object",
        "properties": {
            k: {"type": t}
            for k, t in (
                ("error", "string"),
                ("message", "string"),
                ("record", ["integer", "null"]),
                ("field", ["string", "null"]),
            )
        },
    }
    output = contract.schema.output
    answer = {
        "type": "object",
        "properties": {
            "model_version": {"type": "string"},
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"request_id": {"type": "string"}, output: {"type": "number"}},
                },
            },
        },
    }
    errors = {  # /predict answers every refusal but the unknown id of /feedback
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, (_, text) in STATUSES.items()
        if code != 404
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opsnb prediction service",
            "version": version,
            "description": f"Bodies up to {max_body} bytes and {contract.max_records} "
            "records; every answered prediction is logged before it is returned.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict one record or a list of records",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": contract.max_records,
                                            "items": {"$ref": "#/components/schemas/Record"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per record",
                            "content": {"application/json": {"schema": answer}},
                        },
                        **errors,
                    },
                }
            },
            "/feedback": {
                "post": {
                    "summary": "Store the ground truth of a logged prediction",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["request_id", "label"],
                                    "properties": {
                                        "request_id": {"type": "string"},
                                        "label": {"type": "number"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "Stored"},
                        "404": {"description": STATUSES[404][1]},
                        **errors,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "The process is alive",
                    "responses": {"200": {"description": "Alive"}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "A verified model is loaded and warm",
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Text format"}},
                }
            },
        },
        "components": {"schemas": {"Record": record}},
    }


def docs_page() -> str:
    """A page that renders ``/openapi.json`` with Swagger UI (loaded by the reader's browser)."""
    return """<!doctype html>
<html><head><title>opsnb prediction service</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""
