"""Benchmarks of Claire de Binare against the bus's own limit on the same machine.

Each module measures one thing and returns a ``Result`` (tables + notes) that
``python -m bench run [NAME ...]`` prints and writes into its section of
``docs/benchmarks.md``. Nothing here asserts on time: the smoke tests only check
that every benchmark runs on tiny sizes and prints its table.
"""
