"""raybake: layered, lock-hash-tagged images for Ray clusters from uv projects."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raybake")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
