"""The upstream adapters behind one interface, their wire, and the offline sandbox."""
