"""``python -m proxy`` is the ``criteo-proxy`` command."""

from proxy.cli import main

if __name__ == "__main__":
    main()
