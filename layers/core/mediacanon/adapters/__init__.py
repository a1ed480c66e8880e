"""Adapters that take their clients: S3, PostgreSQL (the Django database), the ledger, grants, CloudFront."""
