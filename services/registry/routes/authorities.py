"""Routes of the registry."""

from fastapi import APIRouter

router = APIRouter()
