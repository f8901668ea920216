"""``opsnb serve`` against hand-written servers: see :mod:`opsnb.bench.service` (the benchmark).

.venv/bin/python benchmarks/serve_bench.py --run runs/latest [--quick]
"""

import sys

from opsnb.bench.service import main

if __name__ == "__main__":
    sys.exit(main())
