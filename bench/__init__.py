"""Benchmarks of the KMS (DESIGN §9): each result is printed as a ratio against a
baseline measured in the same run. ``python -m bench [accept|e2e|rsa|import|crypto ...]``."""
