"""Fakes of Criteo for ``criteo-proxy demo`` and the tests: its authorization server
(``oauth``) and the API behind it (``criteo``), faithful to what Criteo answers.

May import aiohttp and the standard library only, nothing else of the proxy: a fake
that shared the proxy's code would share its mistakes.
"""
