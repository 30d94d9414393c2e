"""The flow engine: graphs, conditions and references, transitions, and atoms."""
