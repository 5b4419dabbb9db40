"""The environment snapshot stored with every result."""

from llenergymeasure.environment.snapshot import EnvironmentSnapshot, GpuInfo, capture_environment

__all__ = ["EnvironmentSnapshot", "GpuInfo", "capture_environment"]
