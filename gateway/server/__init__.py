"""Serving: `gateway serve` and what it checks first, the process's capacity and allocator,
and the HTTP protocol that guards request heads before the app."""
