from opsnb.schema import Schema
from opsnb.serving.contract import STATUSES, RequestContract
from opsnb.serving.openapi import docs_page, document

SCHEMA = Schema.from_dict({
    "task": "regression",
    "target": "y",
    "features": [
        {"name": "age", "kind": "numeric", "nullable": True, "min": 18.0, "max": 80.0},
        {"name": "home", "kind": "categorical", "nullable": False, "categories": ["OWN", "RENT"]},
    ],
})  # fmt: skip


def test_the_request_schema_is_generated_from_schema_json():
    doc = document(RequestContract(SCHEMA, max_records=50), version="abc", max_body=1000)
    record = doc["components"]["schemas"]["Record"]
    assert record["required"] == ["age", "home"]
    assert record["additionalProperties"] is False
    assert record["properties"]["age"] == {
        "type": ["number", "null"],
        "minimum": -44.0,
        "maximum": 142.0,
    }
    assert record["properties"]["home"] == {"type": "string", "enum": ["OWN", "RENT"]}
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 50
    answer = doc["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    item = answer["schema"]["properties"]["predictions"]["items"]["properties"]
    assert set(item) == {"request_id", "value"}  # a regression answers a value
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"400", "413", "415", "422", "503"} <= set(responses)
    assert responses["422"]["description"] == STATUSES[422][1]  # one table of status meanings
    assert doc["info"]["version"] == "abc"


def test_the_docs_page_renders_the_generated_document():
    assert 'url: "/openapi.json"' in docs_page()
