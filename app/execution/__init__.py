"""Running steps: compiler, runner, RQ tasks, event ingestion, and the reaper."""
