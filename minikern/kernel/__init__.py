"""The kernel process (the broker).  Everything in this package runs in it, and only it.

Its size is a headline figure: at most 1,000 lines of code, blank lines,
comments and docstrings not counted (tests/kernel/test_size.py checks).
"""
