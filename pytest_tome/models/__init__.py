"""Models under test: embedded tiny pipelines, architecture presets and real checkpoints."""
