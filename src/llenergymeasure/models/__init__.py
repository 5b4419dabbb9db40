"""Model sources: hub ids, local directories and built-in synthetic presets."""
