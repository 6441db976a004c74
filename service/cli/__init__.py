"""imgcls commands that belong to the service side (no torch): serve, classify, api-key."""
