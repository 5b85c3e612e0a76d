"""Storage behind small interfaces, with an in-process and a Redis implementation."""
