import subprocess
from pathlib import Path

import numpy as np

from opsnb.predictor import load_bundle

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "predict_csv.c"


def _build(bundle: Path, target: Path) -> Path:
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            bundle,
            EXAMPLE,
            bundle / "model.so",
            f"-Wl,-rpath,{bundle}",
            "-lm",
            "-o",
            target,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def test_the_c_example_predicts_what_the_python_predictor_predicts(
    categorical_bundle, model_kinds, tmp_path
):
    program = _build(categorical_bundle, tmp_path / "predict_csv")
    x = model_kinds["categorical"].x[:400].copy()
    x[0] = np.nan  # every feature missing
    x[1, 0], x[2, 1] = -0.0, np.float32(3.4e38)
    lines = ["x0,x1,colour,x2,x3"]  # a header, skipped
    lines += [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in x]
    lines[3] = lines[3].replace(",,", ",nan,", 1)  # both spellings of missing
    done = subprocess.run(
        [program], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
    )
    from_c = np.array(done.stdout.split(), dtype=np.float32)
    model = load_bundle(categorical_bundle)
    np.testing.assert_array_equal(from_c, model.predict(x).astype(np.float32))
    model.close()


def test_the_c_example_names_a_malformed_line(categorical_bundle, tmp_path):
    program = _build(categorical_bundle, tmp_path / "predict_csv")
    done = subprocess.run([program], input="1,2,3\n", capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "line 1: expected 5 comma-separated numbers" in done.stderr
