"""The core of the key-management service: rules, time, errors and crypto.

Nothing in this package imports a web, worker or database framework.
"""

__version__ = "0.1.0"
