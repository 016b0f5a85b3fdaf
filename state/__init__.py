"""State stores and the read API the gateway uses to query them."""
