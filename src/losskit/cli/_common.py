"""What every command shares: one-line errors, the [cli] extra check, safe file writes.

Design note: a file is written to a temporary name in its target directory and renamed over
the final name only once complete (``os.replace`` is atomic on one file system), so a failure
or a Ctrl-C leaves either the old file or none, never half a PNG. Errors a user can act on are
raised as :class:`CLIError` and printed by :func:`losskit.cli.main` as one line on stderr with
exit code 2. Option values are checked before a command does any work or writes anything:
numbers and choices by typer while it parses (``min=``, enums), paths by :func:`output_dir`
and :func:`output_file` at the top of the command.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

EXTRA_HINT = "pip install 'losskit[cli]'"


class CLIError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def require(module: str, purpose: str):
    """Import ``module`` or raise a :class:`CLIError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise CLIError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {EXTRA_HINT}") from error


def check_path_names(path: Path, option: str = "--out") -> None:
    """A CLIError when a part of ``path`` is longer than the file system takes: found here, not as the
    OSError that looking the path up (``exists``, ``is_dir``) raises for it."""
    directory = Path(path.anchor or ".")
    for part in Path(path).parts[len(Path(path.anchor).parts):]:
        longest = _name_max(directory)
        if len(os.fsencode(part)) > longest:
            raise CLIError(f"{option}: expected a path whose every name is at most {longest} bytes (the file "
                           f"system's limit), got one of {len(os.fsencode(part))} bytes ('{part[:40]}...')")
        try:
            descend = (directory / part).is_dir()
        except OSError:  # (a directory we may not read: the callers' own checks say so, naming the option)
            descend = False
        if descend:
            directory = directory / part


def output_dir(path: Path, option: str = "--out") -> Path:
    """``path`` as an existing directory (created with its parents if missing), or a CLIError."""
    check_path_names(path, option)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option}: expected a directory, got the existing file '{path}'")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CLIError(f"{option}: cannot create the directory '{path}': "
                       f"{error.strerror or error}") from None
    if not os.access(path, os.W_OK):
        raise CLIError(f"{option}: the directory '{path}' is not writable")
    return path


@contextlib.contextmanager
def removed_on_failure(directory: Path, option: str = "--out"):
    """The directories that ``directory``'s creation will make (it and its missing parents) removed again, where
    still empty, when the block raises or is interrupted: a failed command leaves nothing behind."""
    check_path_names(Path(directory), option)
    missing, path = [], Path(directory)
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    try:
        yield
    except BaseException:
        for path in missing:  # the deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def output_file(path: Path, option: str = "--out") -> Path:
    """``path`` as a file to write, or a CLIError when a directory has that name or its own directory
    does not exist (found now, not by the final write after all the work)."""
    check_path_names(path.parent, option)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{option}: expected a file in an existing directory, got '{path}' "
                       f"('{parent}' does not exist or is not a directory)")
    check_file_name(path, option)  # first: the file system refuses to look a longer name up
    if path.is_dir():
        raise CLIError(f"{option}: expected a file name, got the existing directory '{path}'")
    if not os.access(parent, os.W_OK | os.X_OK):  # the file is written beside its name, then renamed
        raise CLIError(f"{option}: the directory '{parent}' is not writable")
    return path


def check_file_name(path: Path, option: str = "--out") -> None:
    """A CLIError when ``path``'s name is longer than its file system takes (with the temporary name's
    suffix); read where its directory would be made, so that a bad name is refused before any is."""
    directory = path.parent if str(path.parent) else Path(".")
    while not directory.is_dir() and directory != directory.parent:  # the nearest directory that exists
        directory = directory.parent
    longest = _name_max(directory) - _TEMP_EXTRA
    if len(os.fsencode(path.name)) > longest:
        raise CLIError(f"{option}: expected a file name of at most {longest} bytes (the file system's limit, less "
                       f"the temporary name's suffix), got {len(os.fsencode(path.name))} bytes")


#: the bytes :func:`atomic_write`'s temporary name adds to the file's (``.`` + ``.XXXXXXXX.part``)
_TEMP_EXTRA = 15


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the common limit
        return 255


def atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)`` then rename the temporary file to ``path``; clean up on failure."""
    return atomic_write_all([(Path(path), write)])[0]


def atomic_write_all(writes: list[tuple[Path, Callable[[str], None]]]) -> list[Path]:
    """For each ``(path, write)``, ``write(temp_path)`` beside ``path``; once every one has succeeded, each
    temporary file renamed to its path. A failure removes the temporary files and leaves the earlier files
    as they were: not some files of this run beside others of the last (the demo wrote its figure, then
    failed on a full disk with the predictions of the run before beside it). An OSError names its file."""
    temps: list[str] = []
    try:
        for path, write in writes:
            path = Path(path)
            fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
            os.close(fd)
            temps.append(temp)
            try:
                write(temp)
            except OSError as error:
                raise CLIError(f"cannot write '{path}': {error.strerror or error}") from None
            os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        for (path, _), temp in zip(writes, temps, strict=True):
            os.replace(temp, path)
    except BaseException:
        for temp in temps:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise
    return [Path(path) for path, _ in writes]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, text_writer(text))


def text_writer(text: str) -> Callable[[str], None]:
    """A ``write(temp_path)`` of ``text`` in UTF-8 (:func:`atomic_write_all`)."""
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)

    return write
