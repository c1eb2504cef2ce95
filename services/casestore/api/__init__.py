"""casestore's admin REST API under /api."""
