"""One request upstream and back: the forwarder (with the 401, 429 and transient
rules), the client's request body, the header policy, the answer streamed back, Criteo's
JSON envelope read with bounds, the upstream session, and the API versions seen on the way.

May import tokens, ratelimit, observability, the config's values and the ground floor,
and aiohttp (its client, and the server side's request and response it streams);
never YAML, the server, the console or the CLI.
"""
