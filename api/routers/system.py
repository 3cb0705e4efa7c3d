"""/api/system: hammerwork-web's maintenance route, refused: jobpulse is read-only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.envelope import READ_ONLY_TEXT, read_only
from api.models import ApiResponse

router = APIRouter(prefix="/api/system", tags=["system"])


@router.post("/maintenance", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def maintenance() -> JSONResponse:
    """Refused (405): maintenance of hammerwork's database is hammerwork's to do."""
    return read_only("run maintenance")
