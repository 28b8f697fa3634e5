"""What the proxy tells its operator: logging set-up and log lines, the access line,
request ids, and the Prometheus metrics.

May import the config and the ground floor (``proxy.errors``, ``proxy.exchange``).
"""
