"""Roles, schemas and grants, applied through psycopg by a Pulumi dynamic provider."""
