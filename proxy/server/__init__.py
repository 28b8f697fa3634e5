"""The listening side: sockets and graceful shutdown (``listeners``, ``serving``), the
aiohttp application of each profile and its one request wrapper (``app``), the inbound
guards, and the state a process holds for its profiles (``state``).

The composition root of a serving process: may import every part but the CLI.
"""
