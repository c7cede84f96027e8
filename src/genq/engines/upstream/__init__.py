"""genq as a gateway: engines that hand their jobs to upstream services.

One module per provider (`masterpiecex`, `useapi`, `photogpt`, `vivix`, `replicate`,
`fal`, `openai`, `runway`, `cog`), each exposing
`PROVIDER`, a `genq.engines.upstream.base.Provider` subclass; `PROVIDERS` maps the
`GENQ_UPSTREAMS` keys to them (imported on first use).
"""

from __future__ import annotations

import importlib

from genq.engines.upstream.base import Provider

PROVIDERS: dict[str, str] = {
    "masterpiecex": "genq.engines.upstream.masterpiecex",
    "useapi": "genq.engines.upstream.useapi",
    "photogpt": "genq.engines.upstream.photogpt",
    "vivix": "genq.engines.upstream.vivix",
    "replicate": "genq.engines.upstream.replicate",
    "fal": "genq.engines.upstream.fal",
    "openai": "genq.engines.upstream.openai",
    "runway": "genq.engines.upstream.runway",
    "cog": "genq.engines.upstream.cog",
}


def provider_class(name: str) -> type[Provider]:
    module = importlib.import_module(PROVIDERS[name])
    cls: type[Provider] = module.PROVIDER
    return cls
