"""criteo-proxy: a local authenticating proxy for the Criteo API."""

__version__ = "0.1.0"
