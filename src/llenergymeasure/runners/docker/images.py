"""Checks on the images experiments run in: present on this machine, and of this package's version.

An image is never pulled: a measurement must run on the image the researcher built or chose, not
on whatever a registry serves today. Before a study, each image's harness reports its
llenergymeasure and result-schema versions from a throwaway container; a mismatch stops the study
with the command that rebuilds the image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from llenergymeasure.backends import registry
from llenergymeasure.errors import DockerUnavailableError, RunnerError
from llenergymeasure.runners.docker.container_spec import (
    MANAGED_LABEL,
    ContainerSpec,
    GpuSelection,
    resolve_gpus,
)
from llenergymeasure.runners.docker.daemon import (
    create_container,
    docker_client,
    remove_container,
    start_container,
)

#: the seconds one version-check container may take (an import of the package)
VERSION_CHECK_TIMEOUT_S = 120.0


def build_hint(image: str) -> str:
    """The command that builds ``image`` (or how to get it when it is not one of ours)."""
    known = registry.build_commands()  # the backends' images (anything else: build or pull it)
    if image in known:
        return known[image]
    return f"docker pull {image}, or build it from docker/<backend>.Dockerfile with --tag {image}"


def get_image(client: Any, image: str) -> Any:
    """The local image ``image``; ``DockerUnavailableError`` naming the build command if absent."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(image)
    except ImageNotFound as exc:
        raise DockerUnavailableError(
            f"Docker image {image!r} is not on this machine; build it with: {build_hint(image)}"
        ) from exc


def host_versions() -> dict[str, str]:
    """The versions an image must match: this package's and the result schema's."""
    from llenergymeasure._version import __version__
    from llenergymeasure.results.models import SCHEMA_VERSION

    return {"llenergymeasure_version": __version__, "schema_version": SCHEMA_VERSION}


_checked_images: dict[str, dict[str, str]] = {}


def image_versions(
    image: str, client: Any | None = None, python: str = "python3", gpus: GpuSelection = "auto"
) -> dict[str, str]:
    """Run ``python -m llenergymeasure.harness --print-versions`` in a throwaway container.

    The container requests the same GPUs experiments will, so a missing NVIDIA container toolkit
    is reported here, before a study starts, rather than by its first experiment.
    """
    own = client is None
    client = client or docker_client()
    try:
        img = get_image(client, image)
        if img.id in _checked_images:
            return _checked_images[img.id]
        spec = ContainerSpec(
            image=image,
            entrypoint=(python, "-m", "llenergymeasure.harness"),
            command=("--print-versions",),
            network_mode="none",
            gpus=resolve_gpus(gpus),
            labels={MANAGED_LABEL: "true"},
        )
        container = create_container(client, spec)
        try:
            start_container(container)
            status = container.wait(timeout=VERSION_CHECK_TIMEOUT_S)
            logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            remove_container(container)
        code = int(status.get("StatusCode", -1))
        versions = None
        for line in reversed(logs.splitlines()):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "llenergymeasure_version" in parsed:
                versions = {k: str(v) for k, v in parsed.items()}
                break
        if code != 0 or versions is None:
            tail = "\n".join(logs.splitlines()[-15:])
            raise RunnerError(
                f"image {image!r} cannot run `{python} -m llenergymeasure.harness --print-versions` "
                f"(exit status {code}); is llenergymeasure installed in it? Rebuild it with: "
                f"{build_hint(image)}\n{tail}"
            )
        _checked_images[img.id] = versions
        return versions
    finally:
        if own:
            client.close()


def check_image_versions(
    images: Iterable[str], client: Any | None = None, gpus: GpuSelection = "auto"
) -> None:
    """Before a study: every image must carry this host's package and result-schema versions.

    A result written by another version of the harness could differ in meaning from the ones
    beside it, so a mismatch stops the study here with the command that rebuilds the image.
    """
    own = client is None
    client = client or docker_client()
    try:
        host = host_versions()
        problems = []
        for image in dict.fromkeys(images):
            got = image_versions(image, client=client, gpus=gpus)
            diff = [
                f"{key} {got.get(key, '?')} (host {want})"
                for key, want in host.items()
                if got.get(key) != want
            ]
            if diff:
                problems.append(f"{image}: {', '.join(diff)}; rebuild it with: {build_hint(image)}")
        if problems:
            raise RunnerError(
                "Docker image versions do not match this installation of llenergymeasure:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
    finally:
        if own:
            client.close()
