"""The identity sources behind one interface: keys (the config's and those issued at run time),
SSO tokens, trusted headers."""
