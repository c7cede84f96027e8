"""demo/text-to-3d and demo/image-to-3d write GLB, USDZ, FBX and a preview."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from pxr import Usd, UsdGeom
from pydantic import ValidationError

from genq.engines.context import run_local
from genq.engines.contract import EngineError, Output
from genq.engines.demo import ImageTo3D, ImageTo3DInput, TextTo3D, TextTo3DInput, _fbx
from genq.engines.demo.model3d import pick_shape

from .helpers import check_progress, outputs, resolver, write_png

ASSIMP = shutil.which("assimp")


def fbx_top_nodes(data: bytes) -> list[str]:
    """Names of the top-level nodes of a binary FBX (7.4 or 7.5 layout)."""
    version = struct.unpack_from("<I", data, 23)[0]
    head, fmt = (25, "<QQQ") if version >= 7500 else (13, "<III")
    names, offset = [], 27
    while offset + head <= len(data):
        end = struct.unpack_from(fmt, data, offset)[0]
        if end == 0:
            break
        assert offset < end <= len(data)
        size = data[offset + head - 1]
        names.append(data[offset + head : offset + head + size].decode())
        offset = end
    return names


def check_model_outputs(outs: dict[str, Output]) -> None:
    assert set(outs) == {"glb", "usdz", "fbx", "thumbnail"}
    glb, usdz, fbx, thumb = outs["glb"], outs["usdz"], outs["fbx"], outs["thumbnail"]
    assert glb.content_type == "model/gltf-binary" and glb.kind == "model"
    assert usdz.content_type == "model/vnd.usdz+zip" and usdz.kind == "model"
    assert fbx.content_type == "application/vnd.autodesk.fbx" and fbx.kind == "model"
    for out in (glb, usdz, fbx):
        assert out.meta["vertices"] > 0 and out.meta["faces"] > 0

    scene = trimesh.load(glb.path, file_type="glb")
    meshes = list(scene.geometry.values())
    assert len(meshes) == 1
    assert len(meshes[0].vertices) == glb.meta["vertices"]
    assert len(meshes[0].faces) == glb.meta["faces"]
    assert meshes[0].visual.uv is not None

    stage = Usd.Stage.Open(str(usdz.path))
    prims = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert prims
    points = UsdGeom.Mesh(prims[0]).GetPointsAttr().Get()
    assert len(points) == usdz.meta["vertices"]
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y

    data = fbx.path.read_bytes()
    if fbx.meta["writer"] == "assimp":
        assert data.startswith(b"Kaydara FBX Binary")
        names = fbx_top_nodes(data)
        assert {"FBXHeaderExtension", "Objects", "Connections"} <= set(names)
    else:
        assert fbx.meta["writer"] == "ascii"
        assert b"FBXHeaderExtension" in data

    with Image.open(thumb.path) as im:
        assert im.format == "PNG" and im.size == (512, 512)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_text_to_3d(tmp_path: Path) -> None:
    data = {"prompt": "a blue donut", "texture_size": 256, "delay_s": 0}
    records = run_local(TextTo3D(), data, tmp_path)
    check_progress(records)
    outs = outputs(records)
    check_model_outputs(outs)
    assert outs["glb"].meta["shape"] == "torus"
    expected = "assimp" if ASSIMP else "ascii"
    assert outs["fbx"].meta["writer"] == expected


def test_text_to_3d_seeded(tmp_path: Path) -> None:
    base = {"prompt": "a vase", "texture_size": 256, "delay_s": 0}
    a = outputs(run_local(TextTo3D(), {**base, "seed": 5}, tmp_path / "a"))
    b = outputs(run_local(TextTo3D(), {**base, "seed": 5}, tmp_path / "b"))
    c = outputs(run_local(TextTo3D(), {**base, "seed": 6}, tmp_path / "c"))
    assert a["thumbnail"].sha256 == b["thumbnail"].sha256 != c["thumbnail"].sha256


def test_ascii_fbx_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fbx, "ASSIMP", "genq-test-no-such-program")
    records = run_local(
        TextTo3D(), {"prompt": "a box", "texture_size": 256, "delay_s": 0}, tmp_path
    )
    outs = outputs(records)
    check_model_outputs(outs)
    fbx = outs["fbx"]
    assert fbx.meta["writer"] == "ascii"
    text = fbx.path.read_text()
    assert text.startswith("; FBX 7.4.0 project file")
    assert "PolygonVertexIndex" in text and "Connections:" in text
    if ASSIMP:  # assimp must be able to read what we wrote
        done = subprocess.run(
            [ASSIMP, "info", str(fbx.path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Faces:              {fbx.meta['faces']}" in done.stdout


def test_image_to_3d(tmp_path: Path) -> None:
    src = write_png(tmp_path / "in.png", (80, 60))
    ref = "file_abcdefghij0123"
    records = run_local(
        ImageTo3D(),
        {"image": ref, "texture_size": 256, "delay_s": 0},
        tmp_path / "out",
        resolve_input=resolver({ref: src}),
    )
    check_progress(records)
    outs = outputs(records)
    check_model_outputs(outs)
    mesh = next(iter(trimesh.load(outs["glb"].path, file_type="glb").geometry.values()))
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert extents[0] == pytest.approx(2.0) and extents[1] == pytest.approx(1.5)  # 4:3


def test_image_to_3d_refuses_non_images(tmp_path: Path) -> None:
    src = tmp_path / "x.png"
    src.write_bytes(b"\x89PNG but not really")
    ref = "file_abcdefghij0123"
    with pytest.raises(EngineError) as err:
        run_local(
            ImageTo3D(), {"image": ref, "delay_s": 0}, tmp_path, resolve_input=resolver({ref: src})
        )
    assert err.value.code == "invalid_input"


def test_pick_shape() -> None:
    assert pick_shape("a shiny Ball") == "sphere"
    assert pick_shape("donut with sprinkles") == "torus"
    assert pick_shape("wooden crate") == "rounded-box"
    assert pick_shape("a tall vase") == "gourd"
    assert pick_shape("red pill") == "capsule"
    assert pick_shape("zzz") == pick_shape("zzz")


@pytest.mark.parametrize(
    ("model", "bad"),
    [
        (TextTo3DInput, {"prompt": "x", "texture_size": 300}),
        (TextTo3DInput, {"prompt": "x", "texture_size": 4096}),
        (TextTo3DInput, {"prompt": ""}),
        (ImageTo3DInput, {"image": "file_abcdefghij0123", "prompt": "x"}),
        (ImageTo3DInput, {}),
    ],
)
def test_3d_invalid(
    model: type[TextTo3DInput] | type[ImageTo3DInput], bad: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(bad)
