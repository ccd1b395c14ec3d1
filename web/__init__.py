"""The thin aiohttp front end: authenticate, validate, persist, enqueue, answer."""
