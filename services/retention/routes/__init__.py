"""The retention service's HTTP API, for data-protection officers and ops: the Commission hosts the
system and runs it (rule A3), so every route needs the authority role ``commission``."""

from services.retention.routes import proof, purges, requests

routers = [requests.router, purges.router, proof.router]
