"""jaxdiff.models: see docs/ARCHITECTURE.md (filled by its issue)."""
