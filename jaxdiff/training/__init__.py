"""jaxdiff.training: see docs/ARCHITECTURE.md (filled by its issue)."""
