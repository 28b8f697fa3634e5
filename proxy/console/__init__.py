"""The console: the page at ``/_proxy/`` (``static/``), the two JSON documents behind
it (``/_proxy/status``, ``/_proxy/requests``), the request history they read, and the
browser sessions opened with ``?key=``.

May import forwarding, tokens, ratelimit, observability, the config and the ground
floor; the server's state only as a type (the server hands it in). Never the CLI.
"""
