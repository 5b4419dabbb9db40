"""The serving workload: arrival schedule, driver, metrics and windows of one experiment."""
