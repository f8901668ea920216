"""The prediction service: HTTP app, request contract, micro-batching, prediction log, reload."""

from opsnb.serving.app import ServeOptions, create_app
from opsnb.serving.server import serve

__all__ = ["ServeOptions", "create_app", "serve"]
