"""Runners: where an experiment's harness runs (a fresh local process, or a fresh container)."""
