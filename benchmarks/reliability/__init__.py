"""The reliability suite: fuzzing, schema checks, fault injection, soak.

Entry point: ``python benchmarks/reliability.py``.
"""
