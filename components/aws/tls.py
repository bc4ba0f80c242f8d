"""How the AWS tasks verify RDS: Amazon's CA bundle in their images."""

from __future__ import annotations

# Where the AWS images (app/Dockerfile's `*-aws` targets, the exporter's) keep
# Amazon's RDS CA bundle.
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"
# A task's database settings: the instance's certificate chains to the bundle
# and names the address the task connects to.
VERIFIED = {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": RDS_CA_BUNDLE}
