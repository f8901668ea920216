import numpy as np

from opsnb import compiler, golden


def test_edge_rows_cover_every_edge_named_by_the_contract(model_kinds):
    kind = model_kinds["categorical"]
    model = compiler.load_model(kind.model_path)
    rows, labels = golden.edge_rows(model, kind.schema, kind.x[0])
    assert len(rows) == len(labels)
    assert rows.dtype == np.float32
    assert np.isnan(rows[labels.index("NaN in every feature")]).all()
    for edge in [
        "x0: NaN",
        "colour: NaN",
        "colour: unseen category code",
        "x1: +0",
        "x1: -0",
        "x1: float32 max",
        "x1: float32 lowest",
    ]:
        assert edge in labels
    assert rows[labels.index("colour: unseen category code"), 2] == 5.0
    assert np.signbit(rows[labels.index("x1: -0"), 1])
    thresholds = np.float32(golden.split_thresholds(model)[0])
    at = [rows[i, 0] for i, label in enumerate(labels) if label.startswith("x0: at split")]
    assert at == list(thresholds)  # every threshold, exactly
    t = thresholds[0]
    below = rows[labels.index(f"x0: just below split {golden._text(t)}"), 0]
    above = rows[labels.index(f"x0: just above split {golden._text(t)}"), 0]
    assert np.nextafter(below, np.float32(np.inf)) == t == np.nextafter(above, np.float32(-np.inf))


def test_split_thresholds_are_the_models_numeric_splits(model_kinds):
    kind = model_kinds["binary"]
    found = golden.split_thresholds(compiler.load_model(kind.model_path))
    frame = kind.booster.trees_to_dataframe()
    splits = frame[frame.Feature == "x0"].Split.astype(np.float32)
    assert set(np.float32(found[0])) == set(splits)


def test_both_references_agree_with_each_other_on_the_golden_rows(model_kinds):
    kind = model_kinds["missing"]
    model = compiler.load_model(kind.model_path)
    rows, _ = golden.edge_rows(model, kind.schema, kind.x[1])
    np.testing.assert_allclose(
        golden.xgboost_predict(kind.booster, rows, kind.schema),
        golden.gtil_predict(model, rows),
        atol=1e-6,
    )
