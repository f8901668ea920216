"""``python -m opsnb.cli``: the ``opsnb`` command under this interpreter (servers start so)."""

import sys

from opsnb.cli import main

sys.exit(main())
