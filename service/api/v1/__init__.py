"""/v1: the native API."""
