"""The results archive: every study under one or more roots, scanned and queried with DuckDB."""
