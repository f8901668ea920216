"""Measurement: how fast opsnb is, against the alternatives, measured in the same run.

- :mod:`opsnb.bench.engines` — ``opsnb bench``: the compiled predictor against XGBoost, ONNX
  Runtime, TL2cgen's ``Predictor`` and a C loop, batch by batch.
- :mod:`opsnb.bench.load` — ``opsnb loadtest``: the loopback HTTP load generator.
- :mod:`opsnb.bench.service` — ``python -m opsnb.bench.service``: ``opsnb serve`` against
  hand-written servers (:mod:`opsnb.bench.baselines`) under the load generator.

Nothing here is imported by the prediction service: the server package only serves.
"""
