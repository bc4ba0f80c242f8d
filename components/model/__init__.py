"""What the platform is, independent of where it runs: pure Python, no Pulumi."""
