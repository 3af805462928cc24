"""Adapters for libraries that do native I/O (pyarrow, polars, numpy).

Each is applied only when its library is imported (see ``hook``).
"""
