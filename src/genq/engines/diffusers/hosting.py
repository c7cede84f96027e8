"""Claiming only what a worker can host: engines that name a `device_key` (the
diffusers engines: one GPU, or the CPU) run one job at a time per device on a worker.
An engine's `concurrency` caps its jobs across all workers; this caps them per worker,
so a worker whose GPU is busy leaves the next job to a worker whose GPU is free."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def device_keys(engines: Mapping[str, object]) -> dict[str, str]:
    """Engine name -> device key, for the engines that have one."""
    keys = {name: getattr(e, "device_key", None) for name, e in engines.items()}
    return {name: key for name, key in keys.items() if isinstance(key, str)}


def claim_batches(
    free: int, limits: Mapping[str, int], devices: Mapping[str, str], running: Iterable[str]
) -> list[tuple[int, dict[str, int]]]:
    """(slots, limits) claims to make: engines without a device share the free slots;
    each device not busy with one of `running` (engine names) gets a claim of one job
    among its engines; a busy device's engines are left out."""
    busy = {devices[e] for e in running if e in devices}
    plain = {e: n for e, n in limits.items() if e not in devices}
    batches: list[tuple[int, dict[str, int]]] = [(free, plain)] if plain else []
    per_device: dict[str, dict[str, int]] = {}
    for engine, n in limits.items():
        key = devices.get(engine)
        if key is not None and key not in busy:
            per_device.setdefault(key, {})[engine] = n
    batches += [(1, group) for group in per_device.values()]
    return batches
