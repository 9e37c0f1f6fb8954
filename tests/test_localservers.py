"""The local PostgreSQL a laptop run and the tests start: a reused data directory."""

from __future__ import annotations

import re

from cdb.localservers import PostgresServer, free_port


def test_a_reused_data_dir_serves_on_the_new_port_with_one_port_line(own_postgres):
    """`cdb up` and the fault tests restart a data directory on whatever port is free now:
    the configuration keeps one ``port`` line, the new one, however many restarts there were."""
    own_postgres.stop()
    for _ in range(3):
        server = PostgresServer(own_postgres.data_dir, port=free_port())
        server.start()
        assert server.psql("postgres", "SHOW port").strip() == str(server.port)
        server.stop()
    conf = (own_postgres.pgdata / "postgresql.conf").read_text()
    assert re.findall(r"(?m)^port = (\d+)$", conf) == [str(server.port)]
    own_postgres.start()  # the fixture stops what it started
