"""The CDS Hooks 2.0 wire format: pydantic models for requests, contexts, cards, suggestions, actions,
feedback and discovery, and the OperationOutcome errors the service answers with.

Forgiving on the way in, exact on the way out. Imports nothing from the rest of the package, so the
pathway's card builder and the HTTP edge can both use it.
"""
