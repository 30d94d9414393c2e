"""The timed-job process: fire times (pure), the firing loop."""
