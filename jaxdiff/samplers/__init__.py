"""jaxdiff.samplers: see docs/ARCHITECTURE.md (filled by its issue)."""
