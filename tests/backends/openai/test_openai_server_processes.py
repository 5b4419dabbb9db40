"""The server's processes and GPUs: PIDs behind a listening port (attach mode's foreign_process
exemption), the GPU count of a launch from its parallel sizes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure.backends.openai.backend import OpenAIBackend
from llenergymeasure.backends.openai.launch import gpus_of_args
from llenergymeasure.backends.openai.local_server import listening_inodes, listening_pids
from llenergymeasure.config.experiment import ExperimentConfig
from tests.fakes.openai_server import FakeOpenAIServer


def test_the_port_of_an_in_process_server_is_this_process() -> None:
    with FakeOpenAIServer() as server:
        assert listening_pids(server.port) == {os.getpid()}


def test_a_child_listening_is_found_and_a_closed_port_is_not(tmp_path: Path) -> None:
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert listening_pids(port) == {proc.pid}
    finally:
        proc.kill()
        proc.wait()
    # the port is free now, and on a shared machine another process may listen there next
    assert proc.pid not in listening_pids(port)


def test_a_connected_but_not_listening_socket_does_not_count() -> None:
    with FakeOpenAIServer() as server, socket.create_connection(("127.0.0.1", server.port)):
        assert len(listening_inodes(server.port)) == 1


def test_proc_tables_parsed_from_a_fake_root(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    listen = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
    established = "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n"
    (tmp_path / "net" / "tcp").write_text(header + listen + established)
    (tmp_path / "77" / "fd").mkdir(parents=True)
    os.symlink("socket:[4242]", tmp_path / "77" / "fd" / "5")
    (tmp_path / "78" / "fd").mkdir(parents=True)
    os.symlink("socket:[4343]", tmp_path / "78" / "fd" / "5")
    assert listening_inodes(8080, proc=str(tmp_path)) == {"4242"}
    assert listening_pids(8080, proc=str(tmp_path)) == {77}
    assert listening_pids(8081, proc=str(tmp_path)) == set()


def test_attach_records_the_servers_pids() -> None:
    with FakeOpenAIServer() as server:
        config = ExperimentConfig.from_dict(
            {
                "model": "synthetic/tiny-llama",
                "backend": "openai",
                "openai": {"base_url": server.base_url, "model": server.model},
            }
        )
        backend = OpenAIBackend(config, "/m", gpu_count=lambda: 0)
        info = backend.load()
        backend.close()
    assert backend.server_pids() == {os.getpid()}
    assert info.extra["endpoint"]["server_pids"] == [os.getpid()]


@pytest.mark.parametrize(
    ("engine", "args", "n"),
    [
        ("vllm", [], 1),
        ("vllm", ["--tensor-parallel-size", "4"], 4),
        ("vllm", ["-tp", "2", "--pipeline-parallel-size=2"], 4),
        ("sglang", ["--tp-size", "2", "--dp-size", "2"], 4),
        ("tgi", ["--num-shard", "8"], 8),
        ("trtllm", ["--tp_size", "2"], 2),
    ],
)
def test_gpus_of_a_launch_from_its_parallel_sizes(engine: str, args: list[str], n: int) -> None:
    assert gpus_of_args(engine, args) == n
