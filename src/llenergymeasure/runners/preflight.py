"""What ``llem run --dry-run`` checks that the run would refuse, without starting anything.

The run itself refuses a Docker image that is not on this machine (exit 1) and a results folder
it cannot write (exit 74) only once it starts; a dry run that passed them would be a promise the
run breaks. Neither check starts a container or writes anything that stays.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from llenergymeasure.errors import DockerUnavailableError, filesystem_error, is_filesystem_error


def check_results_dir_writable(results_dir: Path) -> None:
    """``FileSystemError`` (exit 74) unless a study directory could be made under ``results_dir``.

    Probes the folder itself, or its nearest existing parent when it does not exist yet (the run
    creates it), by making and removing an empty directory: permission bits do not stop root,
    a read-only mount does, so only trying tells."""
    target = Path(results_dir).absolute()
    probe_in = target
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        made = tempfile.mkdtemp(prefix=".llem-dry-run-", dir=probe_in)
    except OSError as exc:
        if not is_filesystem_error(exc):
            raise
        exc.filename = exc.filename or str(probe_in)
        raise filesystem_error(
            exc,
            "write the study's files",
            f"The run would stop here (results folder {target}); give a writable folder with "
            "--results-dir or output.results_dir in the user config",
        ) from exc
    with contextlib.suppress(OSError):
        os.rmdir(made)


def check_docker_images_present(images: Iterable[str]) -> None:
    """``DockerUnavailableError`` unless the daemon answers and every image is built here.

    The run also starts each image once to compare its versions; a dry run starts nothing, so
    that check is left to the run."""
    wanted = sorted(set(images))
    if not wanted:
        return
    from llenergymeasure.runners.docker.daemon import docker_client
    from llenergymeasure.runners.docker.images import get_image

    try:
        client = docker_client(timeout_s=20.0)
    except DockerUnavailableError as exc:  # name what the run would need from the daemon
        raise DockerUnavailableError(
            f"the docker runner would use {', '.join(wanted)}, which cannot be checked: {exc}"
        ) from exc
    try:
        for image in wanted:
            get_image(client, image)
    finally:
        client.close()
