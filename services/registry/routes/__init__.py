"""The registry's HTTP API, one router per part."""

from services.registry.routes import auth, authorities, directory, users

routers = [auth.router, authorities.router, users.router, directory.router]
