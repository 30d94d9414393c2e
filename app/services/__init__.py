"""The domain operations the API, the CLI and the scheduler share."""
