"""The local target: the platform on one Docker engine (pulumi-docker)."""
