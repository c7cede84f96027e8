"""Writers of the demo 3D engines: GLB (trimesh), USDZ (usd-core) and a software-rendered
PNG preview (no GL context needed). FBX is in `_fbx`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import trimesh as _trimesh
from PIL import Image, ImageDraw, ImageFilter

from genq.engines.demo._common import to_uint8
from genq.engines.demo._mesh import Mesh, sample_texture

trimesh: Any = _trimesh  # partly typed; used through Any


def write_glb(mesh: Mesh, path: Path) -> None:
    material = trimesh.visual.material.PBRMaterial(
        name="demo",
        baseColorTexture=mesh.texture,
        metallicFactor=0.0,
        roughnessFactor=0.75,
        doubleSided=mesh.double_sided,
    )
    tm = trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        vertex_normals=mesh.normals,
        visual=trimesh.visual.TextureVisuals(uv=mesh.uv, material=material),
        process=False,
    )
    scene = trimesh.Scene(geometry={"demo": tm})
    path.write_bytes(trimesh.exchange.gltf.export_glb(scene, include_normals=True))


def write_usdz(mesh: Mesh, workdir: Path, path: Path) -> None:
    """A UsdGeom.Mesh with a UsdPreviewSurface reading the texture, packaged as USDZ."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

    folder = workdir / "usd"
    folder.mkdir(exist_ok=True)
    mesh.texture.save(folder / "texture.png", compress_level=1)
    stage = Usd.Stage.CreateNew(str(folder / "model.usdc"))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/Root")
    stage.SetDefaultPrim(root.GetPrim())
    geo = UsdGeom.Mesh.Define(stage, "/Root/Mesh")
    geo.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(mesh.vertices.astype(np.float32)))
    geo.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, np.int32)))
    geo.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(mesh.faces.ravel().astype(np.int32)))
    geo.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(mesh.normals.astype(np.float32)))
    geo.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    geo.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    geo.CreateDoubleSidedAttr(mesh.double_sided)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    geo.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    st = UsdGeom.PrimvarsAPI(geo.GetPrim()).CreatePrimvar(
        "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
    )
    st.Set(Vt.Vec2fArray.FromNumpy(mesh.uv.astype(np.float32)))

    material = UsdShade.Material.Define(stage, "/Root/Looks/Demo")
    surface = UsdShade.Shader.Define(stage, "/Root/Looks/Demo/Surface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.75)
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    reader = UsdShade.Shader.Define(stage, "/Root/Looks/Demo/UV")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("st")
    reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    tex = UsdShade.Shader.Define(stage, "/Root/Looks/Demo/Texture")
    tex.CreateIdAttr("UsdUVTexture")
    tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("texture.png")
    tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
        reader.ConnectableAPI(), "result"
    )
    for wrap in ("wrapS", "wrapT"):
        tex.CreateInput(wrap, Sdf.ValueTypeNames.Token).Set("repeat")
    tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
        tex.ConnectableAPI(), "rgb"
    )
    UsdShade.MaterialBindingAPI.Apply(geo.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()
    del stage
    if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(folder / "model.usdc")), str(path)):
        raise RuntimeError("usd-core could not package the USDZ file")


def render_png(mesh: Mesh, size: int = 512, yaw: float = 35.0, pitch: float = 22.0) -> bytes:
    """A shaded preview: orthographic view, painter's algorithm, Lambert light, 2x SSAA."""
    ay, ax = np.radians(yaw), np.radians(pitch)
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    view = mesh.vertices @ (rot_x @ rot_y).T
    tri = view[mesh.faces]
    facing = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] > 0
    keep = np.ones(len(tri), bool) if mesh.double_sided else facing
    normal = (mesh.normals @ (rot_x @ rot_y).T)[mesh.faces].mean(1)  # smooth shading
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal = np.where(facing[:, None], normal, -normal)
    light = np.array([-0.45, 0.65, 0.62]) / np.linalg.norm([-0.45, 0.65, 0.62])
    shade = 0.32 + 0.68 * np.clip(normal @ light, 0, 1)
    color = sample_texture(mesh, mesh.uv[mesh.faces].mean(1)) * shade[:, None]
    ss = size * 2
    lo, hi = view[:, :2].min(0), view[:, :2].max(0)
    scale = 0.8 * ss / float(max(hi - lo))
    center = (hi + lo) / 2
    xy = (view[:, :2] - center) * scale * np.array([1, -1]) + ss / 2

    y = np.linspace(0, 1, ss)[:, None, None]
    bg = np.broadcast_to(np.array([0.93, 0.94, 0.96]) * (1 - 0.25 * y), (ss, ss, 3))
    canvas = Image.fromarray(to_uint8(bg))
    shadow = Image.new("L", (ss, ss), 0)
    bottom = ss / 2 + float(hi[1] - lo[1]) * scale / 2  # lowest screen row of the mesh
    half = float(hi[0] - lo[0]) * scale * 0.4
    box = (ss / 2 - half, bottom - ss * 0.035, ss / 2 + half, bottom + ss * 0.035)
    ImageDraw.Draw(shadow).ellipse(box, fill=90)
    canvas.paste((40, 40, 50), mask=shadow.filter(ImageFilter.GaussianBlur(ss / 40)))
    draw = ImageDraw.Draw(canvas)
    fill = to_uint8(color)
    points = xy[mesh.faces]
    for f in np.argsort(tri[:, :, 2].mean(1), kind="stable"):
        if keep[f]:
            c = tuple(int(x) for x in fill[f])
            draw.polygon([tuple(p) for p in points[f].tolist()], fill=c, outline=c)
    out = canvas.resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
