"""``cdb up`` stopping and starting again: ports left in TIME_WAIT, refusals that leave nothing
behind, a terminal closed (SIGHUP) or ``kill -9`` of ``cdb up``, leftovers of a dead session."""

from __future__ import annotations

import socket
from pathlib import Path

from test_local import base_env, cdb, tempdir

from cdb.local.up import port_free


def _time_wait_port() -> int:
    """A port whose only socket is in TIME_WAIT: the server side closed the connection first.

    The listener sets SO_REUSEADDR as waitress (the services' HTTP server) does; Linux lets a
    new bind take over a TIME_WAIT port only when both sockets set it.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the active close: this end (port) goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def _states(port: int) -> set[str]:
    """TCP states of the sockets bound to local ``port`` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            out.add(fields[3])
    return out


def test_a_port_in_time_wait_is_free_and_a_listening_port_is_not():
    port = _time_wait_port()
    assert "06" in _states(port)  # 06 = TIME_WAIT: what a just-stopped cdb up leaves
    assert port_free(port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert not port_free(busy.getsockname()[1])


def test_a_busy_port_refuses_cdb_up_and_leaves_no_data_dir_behind():
    up_dir = tempdir("cdb-up-") / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cdb(["up", "--data-dir", str(up_dir), "--http-port-base", str(port)], base_env())
    assert done.returncode == 1
    assert f"port {port} (feed) is in use" in done.stderr
    assert not up_dir.exists()  # no data dir, no up.lock: the check came before anything
