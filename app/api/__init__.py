"""The REST API: one blueprint per resource, all under /api/v1."""
