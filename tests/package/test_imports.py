"""The package's import structure: no import circles, every public name importable.

A circle (module a imports b, which imports a, perhaps through others) makes the import order
matter and hides which module owns what; shared helpers belong in a module below both. The
walk reads the source with ``ast``, module-level and function-level imports alike (an import
deferred into a function is still a circle, only a hidden one).
"""

import ast
import importlib
import pathlib

import pytest

import pyconvfast as pcf

SOURCE = pathlib.Path(pcf.__file__).resolve().parent


def _module_name(path, root):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root=SOURCE):
    """``{module: set of pyconvfast modules it imports}`` from the source files under root."""
    modules = {_module_name(path, root): path for path in root.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "pyconvfast":
                for alias in node.names:
                    # "from pyconvfast import _fft" imports the module _fft, not the package
                    target = f"{node.module}.{alias.name}"
                    target = target if target in modules else node.module
                    if target in modules and target != name:
                        graph[name].add(target)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names
                                   if alias.name in modules and alias.name != name)
    return graph


def find_circle(graph):
    """One import circle as a list of modules (first == last), or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 20, "the walk found too few modules"
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_walk_finds_a_circle_where_there_is_one(tmp_path):
    package = tmp_path / "pyconvfast"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_a.py").write_text("from pyconvfast import _b\n")
    (package / "_b.py").write_text("def f():\n    from pyconvfast._c import g\n")
    (package / "_c.py").write_text("import pyconvfast._a\n")
    assert find_circle(import_graph(package)) == [
        "pyconvfast._a", "pyconvfast._b", "pyconvfast._c", "pyconvfast._a"]


@pytest.mark.parametrize("name", pcf.__all__)
def test_every_public_name_is_importable(name):
    assert getattr(pcf, name) is not None


@pytest.mark.parametrize("path", ["pyconvfast.tuning", "pyconvfast.__main__"])
def test_documented_modules_import(path):
    importlib.import_module(path)
