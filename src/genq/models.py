"""Trainable models: a record that a `train` job turns `ready` with its artifact.

Status: created -> training -> ready | failed (training again from ready or failed
is allowed). Images given at creation, uploaded to the model, or listed in the
training input are what the engine learns from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genq import payloads
from genq.errors import Conflict, InvalidInput, NotFound
from genq.ids import iso, new_id
from genq.jobs import JobService
from genq.store import Store
from genq.store.records import Account, Job, Model

CREATED, TRAINING, READY, FAILED = "created", "training", "ready", "failed"


class ModelService:
    def __init__(self, *, store: Store, jobs: JobService) -> None:
        self.store = store
        self.jobs = jobs

    async def create(
        self, account_id: str, *, name: str, engine: str, metadata: Mapping[str, Any] | None
    ) -> Model:
        payloads.check_text(name, "name")
        payloads.check_metadata(metadata)
        eng = self.jobs.engine(engine)
        if eng.task != "train":
            raise InvalidInput(
                f"engine {engine!r} does not train models",
                errors=[{"field": "engine", "message": "not a train engine", "type": "engine"}],
            )
        return await self.store.models.create(
            {
                "id": new_id("model"),
                "account_id": account_id,
                "name": name,
                "engine": engine,
                "status": CREATED,
                "metadata": dict(metadata or {}),
            }
        )

    async def list(self, account_id: str) -> list[Model]:
        return await self.store.models.for_account(account_id)

    async def get(self, account_id: str, model_id: str) -> Model:
        model = await self.store.models.get(model_id)
        if model is None or model.account_id != account_id:
            raise NotFound(f"no model {model_id!r}")
        return model

    async def train(self, account: Account, model_id: str, input: Mapping[str, Any]) -> Job:
        account_id = account.id
        model = await self.get(account_id, model_id)
        if model.status == TRAINING:
            raise Conflict(f"model {model_id} is already training", model_status=model.status)
        data = dict(input)
        if "images" not in data:  # default: the images uploaded to the model
            data["images"] = [f.id for f in await self.store.files.for_model(model_id)]
        # the job and its model's `training` mark are one transaction (409 if another
        # train got there first)
        return await self.jobs.submit(account, model.engine, data, model_id=model_id, trains=True)

    @staticmethod
    def render(model: Model, base_url: str) -> dict[str, Any]:
        return {
            "id": model.id,
            "object": "model",
            "name": model.name,
            "engine": model.engine,
            "status": model.status,
            "job_id": model.job_id,
            "error": model.error,
            "weights_url": f"{base_url}/files/{model.artifact}" if model.artifact else None,
            "metadata": model.metadata,
            "created_at": iso(model.created_at),
            "updated_at": iso(model.updated_at),
        }
