"""The fleet on Redis (DESIGN 11): proxies that share one Criteo app share its access
token, its refresh token and its rate-limit windows, and say that they are there.

``link`` is the connection and its health (a member acts alone while Redis is down);
``sealing`` encrypts every token kept there; ``keys`` names what is kept; the shared
nouns are ``access_token``, ``refresh_token``, ``windows`` and ``members``, put
together per profile by ``member``.

Sits behind the token provider and the pacer: they ask it, it never calls them. May
import the config, observability and the ground floor, redis-py and cryptography;
never the token provider, the pacer, forwarding, the server, the console or the CLI.
"""
