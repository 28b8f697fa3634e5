"""The configuration: YAML file + environment + command-line flags -> one frozen
``Config`` per profile.

``loader`` reads and merges; ``schema`` holds the dataclasses whose field names are
the YAML keys; ``typed_values`` checks each value against its annotation;
``validation`` and ``profiles`` hold the rules across keys and across profiles;
``addresses`` parses host names, origins and URLs (the config's and, for the guards,
the clients').

May import PyYAML, yarl and the standard library, and nothing else of the proxy:
never aiohttp nor the serving side. Every other part reads what this one made.
"""
