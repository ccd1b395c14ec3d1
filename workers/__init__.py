"""Dramatiq actors that carry out every state change, and the scheduler loop."""
