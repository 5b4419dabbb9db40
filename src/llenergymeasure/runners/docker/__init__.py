"""The docker runner: one ephemeral container per experiment, its spec, images and daemon."""
