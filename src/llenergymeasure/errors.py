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
