"""The HTTP endpoints: the image endpoints, quotas, the admin plane and console, operations."""
