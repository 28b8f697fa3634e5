"""Access tokens: the provider (TLRU cache, single flight, back-off), the grants that
ask Criteo for them, the refresh-token store of authorization-code apps, the consent
step, the cache that ``criteo-proxy token`` keeps between calls, and the redaction of
secrets a token endpoint echoes back.

May import the config, the ground floor and aiohttp's client side; never
``aiohttp.web``, the server, forwarding, the console or the CLI: nothing here answers
an HTTP request.
"""
