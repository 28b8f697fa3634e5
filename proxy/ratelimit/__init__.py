"""Criteo's rate-limit windows: who may send now, who waits, and for how long.

``pacer`` keeps the waiting line of each window, ``quota`` the bookkeeping of what a
window allows, ``contention`` the other senders seen in Criteo's counts.

May import the standard library only: pure bookkeeping on a clock, and asyncio's
waiting lines.
"""
