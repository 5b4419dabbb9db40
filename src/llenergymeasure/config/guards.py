"""Guards run on raw YAML data before validation.

Two things never belong in a shareable experiment or study file: a runner (that is a property of
the machine, chosen in the user config, an env var or ``--runner``) and a credential. Credentials
are refused by key name and by value shape, and the message never repeats the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from llenergymeasure.config.loading import LoadedYaml, format_path

_CREDENTIAL_KEY = re.compile(
    r"(?:^|[_\-.])(?:token|access[_-]?token|auth[_-]?token|api[_-]?key|apikey|access[_-]?key|"
    r"password|passwd|secret|secret[_-]?key|private[_-]?key|credentials?)$",
    re.IGNORECASE,
)
_CREDENTIAL_VALUE = [
    (re.compile(r"^hf_[A-Za-z0-9]{20,}$"), "a Hugging Face token"),
    (re.compile(r"^sk-[A-Za-z0-9_\-]{20,}$"), "an OpenAI-style API key"),
    (re.compile(r"^(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}$"), "a GitHub token"),
    (re.compile(r"^AKIA[0-9A-Z]{16}$"), "an AWS access key"),
]

RUNNER_GUIDANCE = (
    "experiment and study files do not choose a runner, so that they stay portable between "
    "machines. Choose it per backend in the user config (`runners: {pytorch: local, vllm: docker}` "
    "in ~/.config/llenergymeasure/config.yaml), with LLEM_RUNNER_<BACKEND>=docker, or with "
    "`llem run FILE --runner docker`"
)


def _walk(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), key, value
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield (*path, i), None, value
            yield from _walk(value, (*path, i))


def find_credentials(data: Any, loaded: LoadedYaml | None = None) -> list[str]:
    """Problems for every key or value that looks like a credential (values never echoed)."""
    problems = []
    for path, key, value in _walk(data):
        where = f"{loaded.where(path)}: " if loaded else ""
        dotted = format_path(path)
        if isinstance(key, str) and _CREDENTIAL_KEY.search(key) and value not in (None, ""):
            problems.append(
                f"{where}{dotted}: looks like a credential; credentials never go in experiment or "
                "study files (they are shared and stored with results). Remove the field and set "
                "HF_TOKEN in the environment or run `huggingface-cli login`"
            )
            continue
        if isinstance(value, str):
            for pattern, what in _CREDENTIAL_VALUE:
                if pattern.match(value.strip()):
                    problems.append(
                        f"{where}{dotted}: the value looks like {what} (not shown); credentials "
                        "never go in experiment or study files. Remove it and set it in the "
                        "environment instead (e.g. HF_TOKEN)"
                    )
                    break
    return problems


def find_runner_fields(data: Any, loaded: LoadedYaml | None = None) -> list[str]:
    """Problems for any ``runner``/``runners`` key in an experiment or study file."""
    problems = []
    for path, key, _ in _walk(data):
        if isinstance(key, str) and key.split(".")[-1] in {"runner", "runners"}:
            where = f"{loaded.where(path)}: " if loaded else ""
            problems.append(f"{where}{format_path(path)}: {RUNNER_GUIDANCE}")
    return problems
