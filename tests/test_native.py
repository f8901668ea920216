import subprocess

import numpy as np
import pytest

from opsnb.errors import CompileError
from opsnb.native import NativeModel, private_copy


def test_a_library_without_the_entry_point_is_named(tmp_path):
    (tmp_path / "plain.c").write_text("int get_num_feature(void) { return 2; }\n")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", tmp_path / "plain.so", tmp_path / "plain.c"], check=True
    )
    with pytest.raises(
        CompileError, match=r"plain.so is not an opsnb model library.*opsnb_predict"
    ):
        NativeModel(tmp_path / "plain.so", feature_names=["a", "b"])


def test_a_schema_of_another_model_is_refused(categorical_bundle):
    with pytest.raises(CompileError, match=r"takes 5 features but the schema lists 2"):
        NativeModel(private_copy(categorical_bundle / "model.so"), feature_names=["a", "b"])


def test_private_copies_never_share_a_path(categorical_bundle):
    a, b = (private_copy(categorical_bundle / "model.so") for _ in range(2))
    assert a != b
    assert a.read_bytes() == b.read_bytes()


def test_margin_output_is_the_logit_of_the_probability(categorical_bundle, model_kinds):
    lib = NativeModel(
        private_copy(categorical_bundle / "model.so"),
        feature_names=model_kinds["categorical"].schema.feature_names,
    )
    x = model_kinds["categorical"].x[:50]
    margin, prob = lib.predict(x, margin=True), lib.predict(x)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), prob, atol=1e-6)
