"""Plans: what an account may do. Configuration, not code: the defaults below can be
replaced or extended with `GENQ_PLANS` (JSON: {"name": {field: value, ...}, ...})."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    generation_per_min: int = Field(ge=1, description="job-creating requests per minute")
    status_per_min: int = Field(ge=1, description="all other requests per minute")
    concurrent_jobs: int = Field(ge=1, description="jobs running at once; more wait queued")
    retention_days: float = Field(gt=0, description="jobs and outputs expire after this")
    monthly_credits: int = Field(ge=0, description="credits granted when the account is made")
    open_streams: int = Field(
        100, ge=1, description="event streams and long-polls open at once (in each process)"
    )


DEFAULT_PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan(
            name="free",
            open_streams=10,
            generation_per_min=20,
            status_per_min=300,
            concurrent_jobs=1,
            retention_days=7,
            monthly_credits=100,
        ),
        Plan(
            name="pro",
            open_streams=100,
            generation_per_min=240,
            status_per_min=1200,
            concurrent_jobs=5,
            retention_days=31,
            monthly_credits=5000,
        ),
        Plan(
            name="ultimate",
            open_streams=500,
            generation_per_min=600,
            status_per_min=3000,
            concurrent_jobs=20,
            retention_days=31,
            monthly_credits=20000,
        ),
    )
}


def merge(overrides: dict[str, dict[str, object]]) -> dict[str, Plan]:
    plans = dict(DEFAULT_PLANS)
    for name, fields in overrides.items():
        base = plans[name].model_dump() if name in plans else {}
        plans[name] = Plan.model_validate({**base, **fields, "name": name})
    return plans
