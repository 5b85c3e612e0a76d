"""An authenticating, quota-enforcing, caching gateway for OpenAI's image-variations endpoint."""

__version__ = "0.1.0"
