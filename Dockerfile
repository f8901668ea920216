# A slim serving image for one compiled bundle.
#
#   .venv/bin/opsnb key > trusted-key.pem      # the public key the bundle is signed with
#   docker build --build-arg RUN=runs/<run-id> -t opsnb-serve .
#   docker run --rm -p 8000:8000 -v opsnb-log:/var/lib/opsnb opsnb-serve
#
# The build stage has the compiler and the project; it checks the bundle against its manifest
# (so a tampered bundle fails the build) and builds a wheel. The serving stage installs the
# wheel without extras: only what serving needs (numpy, pandas, pyarrow, starlette, uvicorn,
# orjson, prometheus-client), none of the pipeline's stack (no XGBoost, scikit-learn, pandera,
# papermill or Jupyter; see the `pipeline` extra in pyproject.toml), no gcc; plus the bundle
# and the test split for `opsnb loadtest`.

ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m pip install /wheels/*.whl
ARG RUN=runs/latest
COPY ${RUN}/bundle /bundle/bundle
COPY ${RUN}/data/test.parquet /bundle/data/test.parquet
ARG TRUST_KEY=trusted-key.pem
COPY ${TRUST_KEY} /bundle/trusted-key.pem
RUN python -c "from pathlib import Path; from opsnb.serving.reload import verify; \
from opsnb.serving.store import Trust; \
verify(Path('/bundle/bundle'), Trust.default(('/bundle/trusted-key.pem',)))"

FROM python:${PYTHON}-slim AS serve
RUN useradd --system --uid 10001 opsnb && mkdir -p /var/lib/opsnb && chown opsnb /var/lib/opsnb
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --from=build --chown=root:root /bundle /srv/model
USER opsnb
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=2)"
# 0.0.0.0 inside the container: the container's network namespace is the boundary.
CMD ["opsnb", "serve", "/srv/model", "--host", "0.0.0.0", "--port", "8000", \
     "--log", "/var/lib/opsnb/predictions.sqlite", "--drain-s", "20", \
     "--trust-key", "/srv/model/trusted-key.pem"]
