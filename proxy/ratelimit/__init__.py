"""Criteo's rate-limit windows: who may send now, who waits, and for how long.

``pacer`` says which bucket a path draws from and holds each bucket's ``window``: the
line that waits, in arrival order; ``quota`` keeps the bookkeeping of what a window
allows, ``window_headers`` reads Criteo's word from an answer, ``contention`` spreads
the sends when others spend the window too, and ``fleet_line`` waits for the fleet's
window instead while coordination (DESIGN 11) is on.

May import the standard library, and of the fleet only ``coordination.outcomes`` at run
time (the member is handed in): pure bookkeeping on a clock, and asyncio's waiting lines.
"""
