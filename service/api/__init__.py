"""The HTTP API: create_app (app.py) wires the inference layer to Litestar routes."""
