"""The one place that touches cryptographic primitives.

Callers get opaque verbs (seal/open, generate, wrap/unwrap, sign/verify); nothing
outside this package imports ``cryptography.hazmat``.
"""
