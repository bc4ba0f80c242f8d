"""The WonderNest API: auth, health and metrics over Postgres and Redis."""

__version__ = "1.0.0"
