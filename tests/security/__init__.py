"""Attacks against the embedded stack, each kept as a test that fails if the defence regresses.

One file per finding (``test_<topic>.py``); every test is bounded in count and in time.
"""
