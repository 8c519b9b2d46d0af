"""jaxdiff.evaluation: see docs/ARCHITECTURE.md (filled by its issue)."""
