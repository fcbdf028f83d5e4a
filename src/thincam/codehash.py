"""Hash of the thincam source a job runs, found by reading imports (no list kept by hand).

Snakemake sees edits to a rule's script but not to the modules it imports. A rule's ``code``
param is :func:`code_hash` of its stage module: the bytes of that module and of every thincam
module it imports, directly or not, at module level or inside functions. Parent packages count
too (their ``__init__`` runs on import). Modules a stage loads by name (the method registry's
solvers) are passed explicitly.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "thincam"


def module_file(src: Path, module: str) -> Path | None:
    """The file of ``thincam.<module>`` (a .py or a package __init__), or None."""
    base = src.joinpath(PACKAGE, *module.split(".")) if module else src / PACKAGE
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _relative(name: str) -> str | None:
    """'thincam.a.b' -> 'a.b'; 'thincam' -> ''; anything else -> None."""
    if name == PACKAGE:
        return ""
    if name.startswith(PACKAGE + "."):
        return name[len(PACKAGE) + 1 :]
    return None


def _imported_names(nodes) -> list[str]:
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from thincam.solvers import ddnm" imports the submodule ddnm when there is one.
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _thincam_modules(src: Path, names: list[str]) -> set[str]:
    found = set()
    for name in names:
        relative = _relative(name)
        if relative is not None and module_file(src, relative) is not None:
            found.add(relative)
    return found


def _existing_file(src: Path, module: str) -> Path:
    path = module_file(src, module)
    if path is None:
        raise FileNotFoundError(f"no module thincam.{module} under {src}")
    return path


def _parse(src: Path, module: str) -> ast.Module:
    path = _existing_file(src, module)
    return ast.parse(path.read_text(), filename=str(path))


def direct_imports(src: Path, module: str) -> set[str]:
    """thincam modules named by the import statements of ``module`` (anywhere in the file)."""
    stat = _existing_file(src, module).stat()
    return set(_direct_imports(src, module, stat.st_mtime_ns, stat.st_size))


@functools.cache
def _direct_imports(src: Path, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    """Cached per file version: a workflow parse hashes 45 rules over the same few dozen modules
    (1.2 of its 4 s went to parsing them again, once per rule and SLURM job)."""
    return frozenset(_thincam_modules(src, _imported_names(ast.walk(_parse(src, module)))))


def entry_imports(src: Path, module: str, function: str) -> set[str]:
    """thincam modules ``module`` imports at module level or inside ``function`` and the
    module-level functions and classes it reaches by name."""
    tree = _parse(src, module)
    defs = {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    if function not in defs:
        raise ValueError(f"thincam.{module} defines no function {function!r}")
    top_level = [node for node in tree.body if node not in defs.values()]
    nodes = list(ast.walk(ast.Module(body=top_level, type_ignores=[])))
    reached, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for node in ast.walk(defs[name]):
            nodes.append(node)
            if isinstance(node, ast.Name) and node.id in defs:
                todo.append(node.id)
    return _thincam_modules(src, _imported_names(nodes))


def _with_parents(module: str) -> set[str]:
    parts = module.split(".") if module else []
    return {".".join(parts[:k]) for k in range(len(parts) + 1)}


@functools.lru_cache(maxsize=None)
def closure(src: Path, module: str) -> frozenset[str]:
    """``module`` and every thincam module it imports transitively, with their parent packages."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in _with_parents(current):
            if name not in seen:
                seen.add(name)
                todo.extend(direct_imports(src, name))
    return frozenset(seen)


def entry_closure(src: Path, entry: str) -> frozenset[str]:
    """Modules an entry runs: ``"module:function"`` (see :func:`entry_imports`) or a module."""
    module, _, function = entry.partition(":")
    if not function:
        return closure(src, module)
    names = set(_with_parents(module))
    for imported in entry_imports(src, module, function):
        names |= closure(src, imported)
    return frozenset(names)


def code_hash(src: str | Path, *entries: str) -> str:
    """sha256 (16 hex) of the sources ``entries`` run (modules or "module:function")."""
    src = Path(src).resolve()
    names = sorted(set().union(*(entry_closure(src, e) for e in entries)))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        digest.update(module_file(src, name).read_bytes())
    return digest.hexdigest()[:16]
