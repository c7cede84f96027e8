"""fal upstream engines: placeholder, filled in by issue 14."""

from __future__ import annotations

from typing import ClassVar

from genq.engines.upstream.base import EngineSpec, Provider


class Placeholder(Provider):
    name: ClassVar[str] = "fal"
    title: ClassVar[str] = "fal"

    def engines(self) -> list[EngineSpec]:
        return []


PROVIDER = Placeholder
