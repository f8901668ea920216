import numpy as np
import pytest

from opsnb.errors import ArtifactError, ParityError
from opsnb.parity import check_parity, parity_report, read_golden, write_golden


def test_the_report_names_the_worst_row_and_its_label():
    report = parity_report(
        np.array([0.5, 0.2, 0.9]),
        np.array([0.5, 0.3, 0.9]),
        tolerance=1e-5,
        row_labels=["a", "b", "c"],
    )
    assert (report["worst_row"], report["worst_label"], report["passed"]) == (1, "b", False)
    assert report["max_abs_diff"] == pytest.approx(0.1)
    with pytest.raises(ParityError, match=r"from xgboost by 0.1 at row 1 \(b\): 0.3 vs 0.2"):
        check_parity(report)


def test_equal_within_tolerance_passes():
    report = parity_report(np.array([0.5, 0.25]), np.array([0.500001, 0.25]), tolerance=1e-5)
    assert check_parity(report)["passed"]


def test_a_nan_prediction_fails_even_when_the_reference_is_nan():
    report = parity_report(np.array([0.5, np.nan]), np.array([0.5, np.nan]), tolerance=1e-5)
    assert not report["passed"]
    assert report["worst_row"] == 1


def test_different_row_counts_are_refused():
    with pytest.raises(
        ParityError, match=r"xgboost gave 3 predictions but the compiled library gave 2"
    ):
        parity_report(np.zeros(3), np.zeros(2))
    with pytest.raises(ParityError, match=r"gave 2 predictions but the compiled library gave 3"):
        parity_report(np.zeros(2), np.zeros(3))


def test_no_rows_is_not_a_pass():
    report = parity_report(np.zeros(0), np.zeros(0))
    assert report == {
        "reference": "xgboost",
        "rows": 0,
        "max_abs_diff": 0.0,
        "max_scaled_diff": 0.0,
        "worst_row": -1,
        "tolerance": 1e-5,
        "passed": False,
    }


def test_the_refusal_states_the_gap_whichever_side_is_larger():
    report = parity_report(np.array([0.5, 0.7]), np.array([0.2, 0.7]), label="treelite.gtil")
    with pytest.raises(
        ParityError,
        match=r"^compiled predictions differ from treelite.gtil by 0.3 at row 0: 0.2 vs 0.5 "
        r"\(tolerance 1e-05, 2 rows compared\); the compiled library must not be used",
    ):
        check_parity(report)


def test_golden_rows_round_trip_nan_signed_zero_and_float32_extremes(tmp_path):
    big = np.finfo(np.float32).max
    rows = np.array([[np.nan, -0.0, big], [0.1, 0.0, -big]], np.float32)
    write_golden(tmp_path / "g.json", rows, np.array([0.25, 0.5]), labels=["x", "y"])
    back, expected, doc = read_golden(tmp_path / "g.json")
    np.testing.assert_array_equal(back, rows)
    assert np.signbit(back[0, 1])
    assert not np.signbit(back[1, 1])
    assert list(expected) == [0.25, 0.5]
    assert doc["labels"] == ["x", "y"]
    assert "NaN" not in (tmp_path / "g.json").read_text()  # strict JSON: null for missing


def test_a_file_that_is_not_golden_is_named(tmp_path):
    (tmp_path / "g.json").write_text('{"rows": [[1]]}')
    with pytest.raises(ArtifactError, match=r"g.json is not a golden file: 'expected'"):
        read_golden(tmp_path / "g.json")


def test_large_outputs_are_compared_relative_to_their_size():
    reference = np.array([0.5, 150.0, -2000.0])
    rounding = reference + np.array([5e-6, 1.2e-4, -0.015])  # float32 rounding at each scale
    report = parity_report(reference, rounding, tolerance=1e-5)
    assert report["passed"] is True
    assert report["max_abs_diff"] == pytest.approx(0.015)
    wrong = parity_report(reference, reference + np.array([0.0, 0.01, 0.0]), tolerance=1e-5)
    assert wrong["passed"] is False
    assert wrong["worst_row"] == 1
    with pytest.raises(ParityError, match=r"differ from xgboost by 0.01 at row 1: 150.01 vs 150"):
        check_parity(wrong)


def test_the_tolerance_given_is_the_one_applied():
    reference = np.array([0.5, 0.25])
    off = reference + np.array([5e-4, 0.0])
    assert parity_report(reference, off, tolerance=1e-3)["passed"] is True
    assert parity_report(reference, off, tolerance=1e-3)["tolerance"] == 1e-3
    assert parity_report(reference, off, tolerance=1e-5)["passed"] is False
    close = reference + np.array([5e-6, 0.0])
    assert parity_report(reference, close)["passed"] is True  # the default: 1e-5
    assert parity_report(reference, close, tolerance=1e-6)["passed"] is False
    exact = 2.0**-17  # representable: the difference is exactly the tolerance
    assert parity_report(reference, reference + exact, tolerance=exact)["passed"] is True  # <=


def test_outputs_up_to_1_are_compared_absolutely_and_beyond_relative_to_the_output():
    # |reference| <= 1: the difference itself; beyond: the difference / |reference|
    for ref, diff, passed, scaled in [
        (0.9, 2e-5, False, 2e-5),
        (-1.0, 1.5e-5, False, 1.5e-5),
        (2.0, 1.5e-5, True, 7.5e-6),
        (5.0, 9e-5, False, 1.8e-5),
        (5.0, 4e-5, True, 8e-6),
        (-300.0, 6e-3, False, 2e-5),
    ]:
        report = parity_report(np.array([ref]), np.array([ref + diff]), tolerance=1e-5)
        assert report["passed"] is passed, (ref, diff)
        assert report["max_scaled_diff"] == pytest.approx(scaled, rel=1e-6), (ref, diff)
        assert report["max_abs_diff"] == pytest.approx(diff, rel=1e-6)
        assert (report["worst_reference"], report["worst_compiled"]) == (ref, ref + diff)
