"""Bridge networking, IPAM, port publishing and DNS."""
