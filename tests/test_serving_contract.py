import json
import math

import numpy as np
import pytest

from opsnb.errors import RequestError
from opsnb.schema import Feature, Schema
from opsnb.serving.contract import (
    STATUSES,
    RequestContract,
    _show,
    allowed_range,
    error_kind,
    parse_feedback,
)

DOC = {
    "task": "binary",
    "target": "y",
    "features": [
        {"name": "age", "kind": "numeric", "nullable": True, "min": 18.0, "max": 80.0},
        {"name": "score", "kind": "numeric", "nullable": False, "min": 300.0, "max": 850.0},
        {
            "name": "home",
            "kind": "categorical",
            "nullable": False,
            "categories": ["OWN", "RENT", "MORTGAGE"],
        },
    ],
}
SCHEMA = Schema.from_dict(DOC)
GOOD = {"age": 40, "score": 700.5, "home": "RENT"}


@pytest.fixture
def contract() -> RequestContract:
    return RequestContract(SCHEMA, max_records=3)


def body(data) -> bytes:
    return json.dumps(data).encode()


def test_one_record_becomes_a_float32_row_in_schema_order(contract):
    rows, records = contract.parse(body({"home": "MORTGAGE", "score": 700.5, "age": None}))
    assert rows.dtype == np.float32
    assert rows.shape == (1, 3)
    assert math.isnan(rows[0, 0])
    assert rows[0, 1:].tolist() == [700.5, 2.0]  # category code = position in categories
    assert records == [{"home": "MORTGAGE", "score": 700.5, "age": None}]


def test_a_list_of_records_keeps_its_order(contract):
    rows, _ = contract.parse(body([GOOD, {**GOOD, "age": 18}, {**GOOD, "home": "OWN"}]))
    assert rows[:, 0].tolist() == [40.0, 18.0, 40.0]
    assert rows[:, 2].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{", 400, r"request body is not valid JSON"),
        (b"\xff\xfe", 400, r"not valid JSON"),
        (b'{"age": NaN}', 400, r"not valid JSON"),
        (b'{"age": 1e400}', 400, r"not valid JSON"),
        (b"[" * 2000 + b"]" * 2000, 400, r"not valid JSON"),
        (b"[]", 422, r"empty array; expected at least one record"),
        (b'"hello"', 422, r"request body is a string; expected a record object"),
        (b"42", 422, r"request body is a number"),
        (b"null", 422, r"request body is null"),
        (body([GOOD] * 4), 413, r"holds 4 records; at most 3 are accepted per request"),
        (body([GOOD, 7]), 422, r"record 1 is a number; expected an object keyed by feature name"),
        (body({"age": 40, "home": "RENT"}), 422, r"record 0 lacks field\(s\) 'score'"),
        (body({**GOOD, "zip": "123"}), 422, r"record 0 has unknown field\(s\) 'zip'"),
        (
            body({**GOOD, "score": "700"}),
            422,
            r"record 0: field 'score' = \"700\" \(a string\); expected a number in \[-250, 1400\]",
        ),
        (body({**GOOD, "score": True}), 422, r"field 'score' = true \(a boolean\)"),
        (body({**GOOD, "score": None}), 422, r"field 'score' = null \(null\); expected a number"),
        (body({**GOOD, "score": [700]}), 422, r"field 'score' = \[700\] \(an array\)"),
        (body({**GOOD, "score": 1e39}), 422, r"outside the float32 range"),
        (body({**GOOD, "score": -3.5e38}), 422, r"outside the float32 range"),
        (
            body({**GOOD, "score": 5000}),
            422,
            r"= 5000 \(a number\); expected a number in "
            r"\[-250, 1400\] \(training range widened",
        ),
        (
            body({**GOOD, "home": "CASTLE"}),
            422,
            r"field 'home' = \"CASTLE\" \(a string\); expected one of \"OWN\", \"RENT\", "
            r"\"MORTGAGE\": unknown category",
        ),
        (body({**GOOD, "home": 1}), 422, r"field 'home' = 1 \(a number\); expected one of"),
        (body({**GOOD, "home": None}), 422, r"field 'home' = null \(null\)"),
        (body([GOOD, GOOD, {**GOOD, "age": "x"}]), 422, r"^record 2: field 'age'"),
    ],
)
def test_bad_bodies_are_refused_with_status_and_a_precise_message(
    contract, payload, status, message
):
    with pytest.raises(RequestError, match=message) as caught:
        contract.parse(payload)
    assert caught.value.status == status


def test_the_refusal_names_record_and_field(contract):
    with pytest.raises(RequestError) as caught:
        contract.parse(body([GOOD, {**GOOD, "home": "CASTLE"}]))
    assert (caught.value.record, caught.value.field) == (1, "home")


def test_long_values_are_shortened_in_messages(contract):
    with pytest.raises(RequestError, match=r"\.\.\. \(a string\)"):
        contract.parse(body({**GOOD, "home": "x" * 10_000}))


def test_range_slack_none_accepts_any_float32():
    contract = RequestContract(SCHEMA, range_slack=None)
    rows, _ = contract.parse(body({**GOOD, "score": 3e38}))
    assert rows[0, 1] == np.float32(3e38)
    assert allowed_range(SCHEMA.features[1], None)[1] == pytest.approx(3.4028235e38)


def test_range_slack_widens_by_the_span_and_a_constant_feature_by_one():
    assert allowed_range(SCHEMA.features[1], 0.5) == (25.0, 1125.0)
    flat = Feature("c", "numeric", min=5.0, max=5.0)
    assert allowed_range(flat, 2.0) == (3.0, 7.0)


def test_feedback_body_is_a_request_id_and_a_finite_label():
    assert parse_feedback(b'{"request_id": "abc", "label": 1}') == ("abc", 1.0)
    with pytest.raises(RequestError, match=r"exactly the fields \"request_id\""):
        parse_feedback(b'{"request_id": "abc"}')
    with pytest.raises(RequestError, match=r"field 'label' = \"yes\" \(a string\); expected a fin"):
        parse_feedback(b'{"request_id": "abc", "label": "yes"}')
    with pytest.raises(RequestError, match=r"field 'request_id' = 7"):
        parse_feedback(b'{"request_id": 7, "label": 0}')
    with pytest.raises(RequestError, match="not valid JSON") as caught:
        parse_feedback(b"{")
    assert caught.value.status == 400


@pytest.mark.parametrize("label", ["0.5", "-5", "2", "true"])
def test_a_binary_models_label_is_0_or_1(label):
    with pytest.raises(RequestError, match=r"field 'label' = .*; expected (0 or 1|a finite)"):
        parse_feedback(b'{"request_id": "a", "label": %s}' % label.encode(), task="binary")
    assert parse_feedback(b'{"request_id": "a", "label": 1.0}', task="binary") == ("a", 1.0)


def test_a_regression_label_is_finite_and_within_float32():
    assert parse_feedback(b'{"request_id": "a", "label": -5.5}', task="regression")[1] == -5.5
    with pytest.raises(RequestError, match=r"expected a number within the float32 range"):
        parse_feedback(b'{"request_id": "a", "label": 1e300}', task="regression")


@pytest.mark.parametrize(
    "body",
    [
        b'{"request_id": "a", "label": 1, "label": 0}',
        b'{"age": 30, "income": 1, "age": 31}',
        b'[{"age": 30}, {"income": 1, "income" : 2}]',
    ],
)
def test_an_object_that_repeats_a_key_is_refused_400_naming_it(body):
    contract = RequestContract(SCHEMA)
    with pytest.raises(RequestError, match=r"repeats the key \"(label|age|income)\"") as caught:
        contract.parse(body)
    assert caught.value.status == 400


def test_keys_inside_strings_are_not_mistaken_for_repeats():
    body = rb'{"request_id": "x\": \"request_id\":", "label": 1}'
    assert parse_feedback(body)[1] == 1.0


def test_every_refusal_status_has_its_documented_error_kind():
    """Clients branch on these kinds (and the OpenAPI document lists them): pinned one by one."""
    assert {status: kind for status, (kind, _) in STATUSES.items()} == {
        400: "syntax", 401: "unauthorized", 404: "unknown_id", 408: "slow_body",
        409: "label_exists", 413: "size", 415: "media_type", 422: "contract", 503: "overload",
    }  # fmt: skip
    assert all(error_kind(status) == kind for status, (kind, _) in STATUSES.items())
    assert error_kind(418) == "client"


def test_the_ends_of_the_allowed_range_are_accepted_and_just_past_them_refused():
    contract = RequestContract(SCHEMA, range_slack=0.5)
    lo, hi = allowed_range(SCHEMA.features[1], 0.5)
    rows, _ = contract.parse(body([{**GOOD, "score": lo}, {**GOOD, "score": hi}]))
    assert rows[:, 1].tolist() == [lo, hi]
    for outside in (lo - 0.5, hi + 0.5):
        with pytest.raises(RequestError, match=r"expected a number in \[25, 1125\] \(training"):
            contract.parse(body({**GOOD, "score": outside}))


def test_a_nullable_category_accepts_null_and_a_required_one_does_not():
    doc = {**DOC, "features": [{**DOC["features"][2], "nullable": True}]}
    rows, _ = RequestContract(Schema.from_dict(doc)).parse(body({"home": None}))
    assert math.isnan(rows[0, 0])
    with pytest.raises(RequestError, match=r"field 'home' = null \(null\); expected one of"):
        RequestContract(SCHEMA).parse(body({**GOOD, "home": None}))


def test_a_long_category_list_is_shown_as_its_first_ten_and_a_count():
    categories = [f"c{i:02d}" for i in range(12)]
    doc = {**DOC, "features": [{**DOC["features"][2], "categories": categories}]}
    with pytest.raises(RequestError) as caught:
        RequestContract(Schema.from_dict(doc)).parse(body({"home": "c99"}))
    listed = ", ".join(f'"{c}"' for c in categories[:10])
    assert f"expected one of {listed} (+2 more): unknown category" in str(caught.value)


def test_a_shortened_value_is_sixty_characters_ending_in_dots(contract):
    with pytest.raises(RequestError) as caught:
        contract.parse(body({**GOOD, "home": "x" * 100}))
    shown = str(caught.value).split("field 'home' = ")[1].split(" (a string)")[0]
    assert shown == '"' + "x" * 56 + "..."
    assert len(shown) == 60


def test_unknown_fields_are_listed_up_to_five_and_forty_characters_each(contract):
    five = {f"extra_{i}_" + "y" * 40: 1 for i in range(5)}
    with pytest.raises(RequestError) as caught:
        contract.parse(body({**GOOD, **five}))
    message = str(caught.value)
    assert ", ".join(repr(k[:40]) for k in five) in message
    assert "..." not in message
    with pytest.raises(RequestError) as caught:
        contract.parse(body({**GOOD, **five, "sixth": 1}))
    assert f"has unknown field(s) {', '.join(repr(k[:40]) for k in five)}...;" in str(caught.value)
    assert "sixth" not in str(caught.value)


def test_a_feedback_refusal_is_about_record_0_the_one_body():
    for label, task in (('"x"', "regression"), ("2", "binary"), ("1e300", "regression")):
        with pytest.raises(RequestError) as caught:
            parse_feedback(b'{"request_id": "a", "label": %s}' % label.encode(), task=task)
        assert (caught.value.record, caught.value.field, caught.value.status) == (0, "label", 422)


def test_the_largest_float32_is_a_valid_regression_label():
    largest = float(np.finfo(np.float32).max)
    assert parse_feedback(b'{"request_id": "a", "label": %r}' % largest, task="regression") == (
        "a", largest,
    )  # fmt: skip


def test_a_thousand_records_per_request_by_default():
    contract = RequestContract(SCHEMA)
    assert contract.max_records == 1000
    rows, _ = contract.parse(body([GOOD] * 1000))
    assert len(rows) == 1000
    with pytest.raises(RequestError, match=r"holds 1001 records; at most 1000") as caught:
        contract.parse(body([GOOD] * 1001))
    assert caught.value.status == 413


def test_float32s_ends_are_judged_by_the_training_range_not_as_out_of_float32():
    contract = RequestContract(SCHEMA, range_slack=0.5)
    largest = float(np.finfo(np.float32).max)
    for value in (largest, -largest):
        with pytest.raises(RequestError) as caught:
            contract.parse(body({**GOOD, "score": value}))
        assert "(training range widened by range_slack=0.5)" in str(caught.value)
        assert "outside the float32 range" not in str(caught.value)
    with pytest.raises(RequestError, match=r"outside the float32 range the compiled model reads"):
        contract.parse(body({**GOOD, "score": 1e39}))


def test_ten_categories_are_all_shown_without_a_count():
    categories = [f"c{i:02d}" for i in range(10)]
    doc = {**DOC, "features": [{**DOC["features"][2], "categories": categories}]}
    with pytest.raises(RequestError) as caught:
        RequestContract(Schema.from_dict(doc)).parse(body({"home": "c99"}))
    assert '"c09": unknown category' in str(caught.value)
    assert "more)" not in str(caught.value)


def test_a_value_json_cannot_spell_is_shown_by_its_repr():
    assert _show({1, 2}) == "{1, 2}"
    assert _show("x") == '"x"'


def test_a_repeated_long_key_is_named_by_its_first_sixty_characters():
    key = "k" * 70
    with pytest.raises(RequestError) as caught:
        RequestContract(SCHEMA).parse(b'{"%s": 1, "%s": 2}' % (key.encode(), key.encode()))
    assert (caught.value.status, caught.value.field) == (400, key[:60])


def test_every_feedback_refusal_is_422_about_record_0():
    bodies = [
        b'{"request_id": "a"}',
        b'{"request_id": "", "label": 1}',
        b'{"request_id": 5, "label": 1}',
    ]
    for feedback in bodies:
        with pytest.raises(RequestError) as caught:
            parse_feedback(feedback)
        assert caught.value.status == 422
    assert caught.value.record == 0
    assert caught.value.field == "request_id"


def test_a_binary_models_labels_0_and_1_are_both_accepted():
    for label in (0, 1, 0.0, 1.0):
        got = parse_feedback(b'{"request_id": "a", "label": %r}' % label, task="binary")
        assert got == ("a", float(label))


def test_a_record_missing_several_fields_names_the_first_in_schema_order(contract):
    with pytest.raises(RequestError, match=r"lacks field\(s\) 'age', 'home'") as caught:
        contract.parse(body({"score": 700.0}))
    assert caught.value.field == "age"


def test_a_value_of_sixty_characters_is_shown_whole_and_one_more_is_shortened():
    assert _show("x" * 58) == '"' + "x" * 58 + '"'  # 60 characters with its quotes
    assert _show("x" * 59) == '"' + "x" * 56 + "..."
