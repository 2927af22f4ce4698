"""The imports of the package, the demo and app.py (module level and inside functions) read with
`ast`: no circle, and no module imports from a layer above its own (docs/ARCHITECTURE.md draws the
layers). The demo sits above the whole package and app.py above the demo: facelift never imports
demo or app, and demo never imports app."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "facelift"
#: what is read: the packages (each module of their folders) and the app's script
PACKAGES = {"facelift": PACKAGE, "demo": ROOT / "demo"}
SCRIPTS = {"app": ROOT / "app.py"}
TOPS = {*PACKAGES, *SCRIPTS}

#: Lowest first. A module may import from its own layer and the ones below, never from above.
LAYERS = [
    ("foundation", ["_version", "errors", "_validate", "_jsonfile", "_mediapipe", "_malloc", "_blas", "geometry"]),
    ("data and formats", ["face_model", "image", "landmarks", "_hub", "models", "export"]),
    ("stages", ["fitting", "unwrap", "albedo", "mesh", "render", "visualize"]),
    ("assembly", ["checks", "bundle", "reconstruction"]),
    ("pipeline", ["pipeline"]),
    ("applications", ["cli", "benchmark", "evaluation", "training", "__init__"]),
    ("demo", ["demo"]),  # every module of demo/: any of facelift, never app
    ("app", ["app"]),    # app.py: the page's layout and launch
]


def _modules() -> dict[str, Path]:
    out = dict(SCRIPTS)
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__" and len(parts) > 2:
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        if package[-1:] == ["__init__"]:  # a top-level package's __init__ (facelift.__init__)
            package = package[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                    if node.level else (node.module or "")
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in TOPS:
                    resolved = known(target)
                    if resolved and resolved != name and not resolved.endswith(".__init__"):
                        found.add(resolved)
        edges[name] = found
    return edges


def _layer(module: str) -> int:
    top = module.split(".")[0]
    first = (module.split(".")[1] if "." in module else "__init__") if top == "facelift" else top
    for i, (_, members) in enumerate(LAYERS):
        if first in members:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _circles(edges: dict[str, set[str]]) -> list[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle():
    circles = _circles(_imports(_modules()))
    assert circles == []


def test_no_import_from_a_higher_layer():
    edges = _imports(_modules())
    upward = sorted(f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
                    for a, targets in edges.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []


def test_the_checker_sees_imports_inside_functions():
    edges = _imports(_modules())
    assert "facelift.render" in edges["facelift.reconstruction"]  # imported inside methods only
    assert "facelift.pipeline" in edges["facelift.evaluation.landmarks68"]


def test_the_checker_reads_the_demo_and_the_app():
    edges = _imports(_modules())
    assert "demo.sessions" in edges["demo.handlers"] and "facelift.image" in edges["demo.handlers"]
    assert "demo.jobs" in edges["demo.http_guard"] and "demo.handlers" in edges["app"]
    assert "demo.sessions" in edges["demo.photo"]  # imported under TYPE_CHECKING only: still read
    assert "facelift._version" in edges["facelift.__init__"]  # the top package's relative imports


def test_the_library_never_imports_the_demo_or_the_app():
    """Said by the layers too (both sit above every facelift module); here by name, so that a
    change to LAYERS cannot let it through."""
    edges = _imports(_modules())
    wrong = sorted(f"{a} imports {b}" for a, targets in edges.items() for b in targets
                   if (a.startswith("facelift") and not b.startswith("facelift"))
                   or (a.startswith("demo") and b == "app"))
    assert wrong == []


#: Third-party packages imported before the snapshot: some change the environment themselves
#: (opencv-contrib's cv2 sets LD_LIBRARY_PATH and QT_* on import, threadpoolctl KMP_DUPLICATE_LIB_OK);
#: that is theirs, not ours. (Run alone, this test saw threadpoolctl's variable as facelift.albedo's.)
_THIRD_PARTY = ["numpy", "scipy", "scipy.sparse", "scipy.spatial.transform", "cv2", "torch", "PIL", "safetensors",
                "trimesh", "huggingface_hub", "tqdm", "threadpoolctl"]


def test_importing_any_module_writes_no_environment_and_redirects_no_fd():
    """Every module of the package imported in a fresh interpreter (PYOPENGL_PLATFORM and DISPLAY
    unset, as on a server): the environment and fds 0-2 are as before, and neither MediaPipe nor
    OpenGL is loaded. The OpenGL platform is chosen and fd 2 filtered on first use only."""
    code = f"""
import importlib, os, pkgutil, sys
for name in {_THIRD_PARTY!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
env = dict(os.environ)
fds = [(os.fstat(i).st_dev, os.fstat(i).st_ino) for i in range(3)]
import facelift
names = [m.name for m in pkgutil.walk_packages(facelift.__path__, "facelift.")]
for name in names:
    importlib.import_module(name)
changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
assert not changed, f"the environment changed on import: {{changed}}"
assert fds == [(os.fstat(i).st_dev, os.fstat(i).st_ino) for i in range(3)], "an fd was redirected"
loaded = [m for m in ("mediapipe", "OpenGL", "pyrender") if m in sys.modules]
assert not loaded, f"imported on import: {{loaded}}"
print("ok", len(names))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stdout + out.stderr
