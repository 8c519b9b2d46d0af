"""jaxdiff.data: see docs/ARCHITECTURE.md (filled by its issue)."""
