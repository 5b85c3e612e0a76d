"""The HTTP endpoints: variations, quotas, the admin plane and console, operations."""
