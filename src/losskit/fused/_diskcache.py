"""numba's disk cache for this package's kernels, keyed on the source of the whole package.

numba keys a cached function on the content of the one file that defines it, but a kernel here
compiles in code of other files of this package: ``vmath``'s exp and log, ``kernels.py``'s row
functions inside ``rows.py``'s kernels. An edit of ``vmath.py`` alone left every cached kernel of
``kernels.py``, ``rows.py`` and ``pairs.py`` loading its old machine code, silently (a developer's tree;
a ``pip install`` writes every file anew, which numba sees). The locators below are numba's own for a
source file (``NUMBA_CACHE_DIR``, else the module's ``__pycache__``, else the user-wide folder: the
same places in the same order) with one change: the source stamp is a hash of every module of this
package (:func:`package_stamp`), so an edit of any of them recompiles all. Functions elsewhere keep
numba's locators. Installed when a kernel module is imported (each imports this one first); if a
numba version lacks these (private) classes nothing is installed and numba keys on the file alone.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from numba.core import caching

#: the folder whose modules define the compiled kernels
PACKAGE = Path(__file__).resolve().parent


@functools.cache
def package_stamp(folder: Path = PACKAGE) -> bytes:
    """A SHA-256 of every ``*.py`` in ``folder``, names and contents, in name order (about a millisecond,
    once per process)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.digest()


def _in_package(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().parent == PACKAGE
    except (OSError, TypeError, ValueError):
        return False


def _package_locator(base: type) -> type:
    class PackageLocator(base):
        def get_source_stamp(self):
            return package_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            return super().from_function(py_func, py_file) if _in_package(py_file) else None

    PackageLocator.__name__ = PackageLocator.__qualname__ = f"Package{base.__name__.lstrip('_')}"
    return PackageLocator


def _numba_names(*names: str) -> list:
    """numba's classes of these names (each with a leading underscore in some versions), None where absent."""
    return [getattr(caching, name, None) or getattr(caching, f"_{name}", None) for name in names]


#: numba's list of locator classes (``CacheImpl._locator_classes``), None where it has none
_LIST = getattr(_numba_names("CacheImpl")[0], "_locator_classes", None)
_BASES = _numba_names("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
#: this package's locators, tried before numba's (empty where numba lacks the classes they extend)
LOCATORS: tuple[type, ...] = () if None in _BASES or not isinstance(_LIST, list) else \
    tuple(_package_locator(base) for base in _BASES)


def install() -> None:
    """Put :data:`LOCATORS` first in numba's list (once)."""
    if LOCATORS and LOCATORS[0] not in _LIST:
        _LIST[:0] = LOCATORS


install()
