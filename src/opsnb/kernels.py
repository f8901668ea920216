"""The Jupyter kernel stage notebooks run in: always the Python that runs opsnb.

Papermill starts a kernel by name. A name resolved through the machine's Jupyter paths could
find another Python (a user-wide ``python3``, an older opsnb), so opsnb writes its own kernelspec
into ``sys.prefix`` and puts that folder first on ``JUPYTER_PATH``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from opsnb.artifacts import read_json, write_json

log = logging.getLogger(__name__)

KERNEL_NAME = "opsnb"


def kernel_spec() -> dict[str, Any]:
    """The kernelspec of the ``opsnb`` kernel: this Python, quiet about its own transport."""
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.log_level=ERROR"],
        "display_name": "Python (opsnb)",
        "language": "python",
        "metadata": {"debugger": True},
    }  # fmt: skip


def ensure_kernel() -> str:
    """Make papermill run notebooks with *this* Python: a kernelspec in ``sys.prefix``.

    ``JUPYTER_PATH`` is pointed there first so a user-wide kernel of the same name elsewhere
    cannot win. Returns the kernel name.
    """
    share = Path(sys.prefix) / "share" / "jupyter"
    spec_file = share / "kernels" / KERNEL_NAME / "kernel.json"
    wanted = kernel_spec()
    if not spec_file.is_file() or read_json(spec_file) != wanted:
        write_json(spec_file, wanted)
        log.info("installed the %s kernel for %s", KERNEL_NAME, sys.executable)
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(share) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(share), *filter(None, paths)])
    return KERNEL_NAME


def quiet_kernel_manager(log_path: Path) -> type[AsyncKernelManager]:
    """A kernel manager whose kernel writes its own stdout/stderr to ``log_path``, not the terminal.

    The kernel's process-level output is transport noise for a pipeline run (jupyter_client
    interrupts a kernel before shutting it down, and ipykernel logs "KeyboardInterrupt caught in
    kernel"); a native crash still leaves its message in that file. What cells print goes to the
    notebook as always.
    """

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as sink:
                kw.setdefault("stdout", sink)
                kw.setdefault("stderr", sink)
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager
