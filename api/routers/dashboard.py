"""The live dashboard at ``/``: static files shipped in the package, no CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
