"""The page links answer (`POST .../page-links`): URLs a browser can open."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PageLinks(BaseModel):
    browser: str = Field(description="The cluster browser page of the version.")
    report: str = Field(description="The version's HTML evaluation report.")
    expires_at: datetime | None = Field(
        description="When the links stop working; null when API keys are off (no token)."
    )
