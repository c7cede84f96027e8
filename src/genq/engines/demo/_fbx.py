"""FBX for the demo 3D engines: assimp's CLI (binary FBX) when it is installed,
else a minimal ASCII FBX 7.4 written here, so the engines never fail for lack of it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from genq.engines.demo._mesh import Mesh, sample_texture

FBX_MAGIC = b"Kaydara FBX Binary"
ASSIMP = "assimp"  # the CLI looked up on PATH (Debian: assimp-utils)


def write_fbx(glb: Path, mesh: Mesh, path: Path) -> str:
    """FBX through assimp's CLI when installed (binary FBX), else our ASCII FBX 7.4.
    Returns the writer used: `assimp` or `ascii`."""
    exe = shutil.which(ASSIMP)
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
