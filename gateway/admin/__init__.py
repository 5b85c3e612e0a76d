"""The admin plane: runtime keys and quota rules, their store and audit trail, each replica's
view of them, and the `gateway` commands that drive a running gateway's admin API."""
