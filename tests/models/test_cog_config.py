"""GENQ_COG read into the gateway (no server needed): engine names, fleets, prices, what
a prediction's outputs become, and what counts as a prediction's end."""

from __future__ import annotations

import pytest

from genq.engines.upstream.cog import Cog, _remotes, split_id, with_cog
from genq.engines.upstream.gateway import Gateway
from genq.settings import Settings


def test_genq_cog_becomes_the_gateway_s_cog_upstream() -> None:
    cog = {
        "acme/echo": {"url": "http://127.0.0.1:5000/"},
        "acme/sd": {"urls": ["http://gpu1:5000", "http://gpu2:5000"], "slots": 2, "price": 7},
    }
    merged = with_cog({"cog": {"health_s": 0.5}}, cog)["cog"]
    assert merged["health_s"] == 0.5 and merged["idempotent"] is True
    assert merged["max_jobs"] == 5 and merged["prices"] == {"acme/sd": 7}
    assert with_cog({}, {}) == {}

    gateway = Gateway(with_cog({}, cog))
    assert sorted(gateway.engines) == ["cog/acme/echo", "cog/acme/sd"]
    sd = gateway.engines["cog/acme/sd"]
    assert sd.price == 7
    # no server seen up yet: no slots, so the worker claims none of its jobs
    assert sd.live_concurrency is not None and sd.live_concurrency() == 0
    provider = gateway.upstreams["cog"].provider
    assert isinstance(provider, Cog)
    provider.servers["http://gpu1:5000"].status = "READY"
    provider.servers["http://gpu2:5000"].status = "BUSY"
    assert sd.live_concurrency() == 4
    assert gateway.final_push is not None
    assert gateway.final_push({"id": "p", "status": "succeeded"})
    assert not gateway.final_push({"id": "p", "status": "processing"})
    assert Gateway({}).final_push is None  # (other providers: the latest push wins)


def test_settings_read_genq_cog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENQ_COG", '{"acme/echo": {"url": "http://127.0.0.1:5000"}}')
    assert Settings().cog == {"acme/echo": {"url": "http://127.0.0.1:5000"}}


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"url": "ftp://x"},
        {"urls": []},
        {"url": "http://x", "slots": 0},
        {"url": "http://x", "task": "dance"},
    ],
)
def test_a_bad_entry_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Gateway(with_cog({}, {"acme/echo": entry}))


def test_outputs_of_a_prediction() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    named = _remotes({"image": png, "text": "hello", "score": 0.5})
    assert [(r.name, r.url[:15]) for r in named] == [
        ("image", "data:image/png;"),
        ("text", "data:text/plain"),
        ("score", "data:applicatio"),
    ]
    listed = _remotes(["https://cdn/x.png", png])
    assert [r.name for r in listed] == ["output_0", "output_1"]
    assert _remotes(None) == []
    assert split_id("job_1@http://h:5000") == ("job_1", "http://h:5000")
