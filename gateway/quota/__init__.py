"""The quota plane: which rules apply to whom, their counters, the ledger that charges them,
and the monthly books."""
