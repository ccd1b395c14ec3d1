"""Request handlers: one module per resource, each handler a short recipe."""
