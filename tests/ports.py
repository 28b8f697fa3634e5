"""A free loopback port, for the tests and for the benchmarks of tests/bench/.

Standard library only: the benchmarks run as scripts (``python tests/bench/bench.py``)
and import this module with the repository put on their path, not through pytest.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
