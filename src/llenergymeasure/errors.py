"""Typed errors shared by the library and the CLI.

Every error says what was wrong (the field or the cause), the value where it is safe to show, and
what would work. The CLI maps ``exit_code`` to the process exit status: 2 for bad input, 1 for a
failure while running.
"""

from __future__ import annotations


class LLEMError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(LLEMError):
    """A configuration file, a field, or a CLI flag is invalid.

    ``problems`` holds one line per problem so that several mistakes in one file are reported
    together rather than one per run of the tool.
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None, source: str | None = None):
        self.problems = problems or []
        self.source = source
        text = message
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class RunnerError(LLEMError):
    """A runner specification is invalid or cannot be honoured on this machine."""

    exit_code = 2


class BackendUnavailableError(LLEMError):
    """An inference engine's Python package is not installed or cannot start here."""

    exit_code = 1


class DockerUnavailableError(LLEMError):
    """The Docker daemon, an image, or the NVIDIA container toolkit is missing."""

    exit_code = 1


class ExperimentError(LLEMError):
    """An experiment failed; ``phase`` says where (load, warmup, baseline, measure, ...)."""

    exit_code = 1

    def __init__(self, message: str, phase: str | None = None):
        self.phase = phase
        super().__init__(message)


class StudyInterrupted(LLEMError):
    """The study was stopped by the user (Ctrl-C); the manifest says how to resume."""

    exit_code = 130


class FileSystemError(LLEMError):
    """A file or directory could not be read or written: read-only or full disk, permissions.

    Exit status 74 (``EX_IOERR`` of sysexits.h) so that scripts can tell it from a failed
    experiment (1) and from bad input (2).
    """

    exit_code = 74


_FS_ADVICE = {
    "EROFS": "the filesystem is mounted read-only: use a writable directory (for `llem run`, "
    "--results-dir or output.results_dir in the user config)",
    "ENOSPC": "the disk is full: free space on it (`df -h` shows how much is left) or use "
    "another disk (for `llem run`, --results-dir)",
    "EDQUOT": "your disk quota is used up: free space or choose another results directory",
    "EACCES": "you have no permission there: fix the permissions or choose another directory",
    "EPERM": "the operation is not permitted there: fix the permissions or choose another directory",
    "EIO": "the device reported an I/O error: check the disk (`dmesg`)",
}

#: errno names that mean "this path cannot be used", whether or not the error names the path
FS_ERRNOS = frozenset(
    {*_FS_ADVICE, "ENOENT", "ENOTDIR", "EISDIR", "EEXIST", "EMLINK", "ENAMETOOLONG"}
)


def is_filesystem_error(exc: OSError) -> bool:
    """True for an error about a file or directory (not, say, a refused network connection)."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    return name in FS_ERRNOS or (exc.filename is not None and not isinstance(exc, ConnectionError))


def filesystem_error(exc: OSError, doing: str, then: str | None = None) -> FileSystemError:
    """A ``FileSystemError`` naming what was being done, the path, the system's words and a fix."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    path = f": {exc.filename}" if exc.filename is not None else ""
    text = exc.strerror or str(exc)
    message = f"cannot {doing}{path}: {text}" + (f" ({name})" if name else "")
    advice = _FS_ADVICE.get(name)
    if advice:
        message += f". What to do: {advice}"
    if then:
        message += f". {then}"
    return FileSystemError(message)
