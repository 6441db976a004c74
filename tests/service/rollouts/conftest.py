from tests.service.api.conftest import png, server

__all__ = ["png", "server"]
