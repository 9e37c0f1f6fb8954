"""Claire de Binare: a safety-first, event-driven crypto trading system."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("claire-de-binare")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
