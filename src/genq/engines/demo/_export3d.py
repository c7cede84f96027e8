"""Writers of the demo 3D engines: GLB (trimesh), USDZ (usd-core), FBX (assimp's CLI,
else an ASCII FBX 7.4 of our own) and a software-rendered PNG preview."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import trimesh as _trimesh
from PIL import Image, ImageDraw, ImageFilter

from genq.engines.demo._common import Float, to_uint8
from genq.engines.demo._mesh import Mesh

FBX_MAGIC = b"Kaydara FBX Binary"
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


def write_fbx(glb: Path, mesh: Mesh, path: Path) -> str:
    """FBX through assimp's CLI when installed (binary FBX), else our ASCII FBX 7.4.
    Returns the writer used: `assimp` or `ascii`."""
    exe = shutil.which("assimp")
    if exe:
        try:
            done = subprocess.run(
                [exe, "export", str(glb), str(path), "-ffbx"],
                capture_output=True,
                timeout=120,
                check=False,
            )
            if done.returncode == 0 and path.is_file():
                with path.open("rb") as f:
                    if f.read(len(FBX_MAGIC)) == FBX_MAGIC:
                        return "assimp"
        except (OSError, subprocess.TimeoutExpired):
            pass
    path.write_text(ascii_fbx(mesh))
    return "ascii"


def _numbers(values: np.ndarray, fmt: str) -> str:
    return ",".join(fmt.format(x) for x in values.ravel().tolist())


def _array(depth: int, key: str, values: np.ndarray, fmt: str = "{:.6g}") -> list[str]:
    tab = "\t" * depth
    return [f"{tab}{key}: *{values.size} {{", f"{tab}\ta: {_numbers(values, fmt)}", f"{tab}}}"]


def _layer(kind: str, name: str, key: str, values: np.ndarray) -> list[str]:
    return [
        f"\t\t{kind}: 0 {{",
        "\t\t\tVersion: 101",
        f'\t\t\tName: "{name}"',
        '\t\t\tMappingInformationType: "ByVertice"',
        '\t\t\tReferenceInformationType: "Direct"',
        *_array(3, key, values),
        "\t\t}",
    ]


def _block(depth: int, head: str, body: list[str]) -> list[str]:
    tab = "\t" * depth
    return [f"{tab}{head} {{", *(f"{tab}\t{line}" for line in body), f"{tab}}}"]


def ascii_fbx(mesh: Mesh) -> str:
    """A minimal, valid ASCII FBX 7.4: one mesh with normals, UVs and vertex colours
    (sampled from the texture, which is not embedded) and a material."""
    index = mesh.faces.copy()
    index[:, 2] = -index[:, 2] - 1  # FBX marks a polygon's last vertex as -(i + 1)
    rgb = sample_texture(mesh, mesh.uv)
    colors = np.concatenate([rgb, np.ones((len(rgb), 1))], 1)
    r, g, b = rgb.mean(0)
    axes = [("UpAxis", 1), ("UpAxisSign", 1), ("FrontAxis", 2), ("FrontAxisSign", 1)]
    axes += [("CoordAxis", 0), ("CoordAxisSign", 1)]
    settings = [f'P: "{k}", "int", "Integer", "",{v}' for k, v in axes]
    settings.append('P: "UnitScaleFactor", "double", "Number", "",100')
    layers = ("Normal", "UV", "Color", "Material")
    lines = [
        "; FBX 7.4.0 project file",
        "; Written by the genq demo engines",
        "",
        *_block(
            0,
            "FBXHeaderExtension: ",
            ["FBXHeaderVersion: 1003", "FBXVersion: 7400", 'Creator: "genq demo engines"'],
        ),
        *_block(0, "GlobalSettings: ", ["Version: 1000", *_block(0, "Properties70: ", settings)]),
        *_block(
            0,
            "Definitions: ",
            ["Version: 100", "Count: 4"]
            + [
                line
                for t in ("GlobalSettings", "Model", "Geometry", "Material")
                for line in _block(0, f'ObjectType: "{t}"', ["Count: 1"])
            ],
        ),
        "Objects:  {",
        '\tGeometry: 1000, "Geometry::demo", "Mesh" {',
        *_array(2, "Vertices", mesh.vertices),
        *_array(2, "PolygonVertexIndex", index, "{:d}"),
        "\t\tGeometryVersion: 124",
        *_layer("LayerElementNormal", "", "Normals", mesh.normals),
        *_layer("LayerElementUV", "UVMap", "UV", mesh.uv),
        *_layer("LayerElementColor", "Colors", "Colors", colors),
        *_block(
            2,
            "LayerElementMaterial: 0",
            [
                "Version: 101",
                'Name: ""',
                'MappingInformationType: "AllSame"',
                'ReferenceInformationType: "IndexToDirect"',
                "Materials: *1 {",
                "\ta: 0",
                "}",
            ],
        ),
        *_block(
            2,
            "Layer: 0",
            ["Version: 100"]
            + [
                line
                for t in layers
                for line in _block(
                    0, "LayerElement: ", [f'Type: "LayerElement{t}"', "TypedIndex: 0"]
                )
            ],
        ),
        "\t}",
        *_block(
            1,
            'Model: 2000, "Model::demo", "Mesh"',
            [
                "Version: 232",
                "Shading: T",
                'Culling: "CullingOff"',
            ],
        ),
        *_block(
            1,
            'Material: 3000, "Material::demo", ""',
            [
                "Version: 102",
                'ShadingModel: "phong"',
                "MultiLayer: 0",
                *_block(
                    0,
                    "Properties70: ",
                    [
                        f'P: "DiffuseColor", "Color", "", "A",{r:.4f},{g:.4f},{b:.4f}',
                    ],
                ),
            ],
        ),
        "}",
        *_block(0, "Connections: ", ['C: "OO",2000,0', 'C: "OO",1000,2000', 'C: "OO",3000,2000']),
    ]
    return "\n".join(lines) + "\n"


def sample_texture(mesh: Mesh, uv: Float) -> Float:
    """RGB in 0..1 of the texture at texture coordinates `uv` (wrapping)."""
    tex = np.asarray(mesh.texture.convert("RGB"), dtype=np.float64) / 255.0
    h, w, _ = tex.shape
    x = (np.mod(uv[:, 0], 1.0) * (w - 1)).round().astype(int)
    y = ((1 - np.mod(uv[:, 1], 1.0)) * (h - 1)).round().astype(int)
    return np.asarray(tex[y, x])


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
