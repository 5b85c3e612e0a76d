"""The identity sources behind one interface: keys, SSO tokens, trusted headers."""
