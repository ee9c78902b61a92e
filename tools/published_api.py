"""List the API of a published archit wheel, parsed with ``ast`` and never imported (the published wheels run only on
the transformers of their time), into the JSON fixture that ``tests/test_published_api.py`` holds our archit to.

    python tools/published_api.py archit-2026.4.1-py3-none-any.whl tests/data/published_api.json
    python tools/published_api.py unpacked/ tests/data/published_api.json     (a folder holding the package, or the
                                                                                package folder itself)

What it lists, per module (dotted path): every module-level public name (no leading underscore) that a ``def``, a
``class``, an assignment, an annotated assignment with a value or an import binds (in ``if``/``try``/``with``/loop
blocks too, except ``if TYPE_CHECKING:``), with its kind:

- ``function``: its ``signature``, a list of parameters (``name``; ``kind``: positional-only, positional-or-keyword,
  var-positional, keyword-only, var-keyword; ``default``: whether it has one), and its ``decorators`` as written;
- ``class``: its ``bases`` and ``decorators`` as written, ``dataclass`` (decorated with ``dataclass``), and its
  ``members``: every method and attribute its body defines whose name is public or starts with one underscore (the
  hooks subclasses override), no dunder but ``__init__``, each with its ``kind`` (method, classmethod, staticmethod,
  property, attribute, class), ``abstract``, ``signature`` (methods: as written, ``self``/``cls`` included),
  ``decorators``; attributes with ``annotated`` and ``assigned`` (whether the body assigns a value). A dataclass
  without an ``__init__`` of its own gets the ``__init__`` that ``dataclass`` generates (``"synthesized":
  "dataclass"``; ``kw_only`` fields last), its fields gathered through the dataclass bases defined in the package (in
  reverse order of the bases, as ``dataclass`` walks the MRO, which is exact for single inheritance);
- ``value``: anything else an assignment binds; ``alias_of`` when the value is a plain name (``Old = New``);
- ``import``: its ``source``, ``{"module": ..., "name": ...}`` (``name`` absent for ``import x``), relative imports
  resolved to absolute ones. Star imports of package modules are expanded (the ``__all__`` of the imported module, else
  its public names); star imports from outside the package are listed under ``unresolved_star_imports``.

and the module's ``__all__`` (null without one). The output is deterministic: sorted keys, indent 1. Standard library
only.
"""
import ast
import io
import json
import sys
import zipfile
from email.parser import Parser
from pathlib import Path, PurePosixPath

PARAMETER_KINDS = ("positional-only", "positional-or-keyword", "var-positional", "keyword-only", "var-keyword")


def read_sources(location: Path) -> tuple[dict[str, tuple[str, bool]], dict | None]:
    """{dotted module name: (source, is a package's __init__)} of every module in a wheel or folder, and the
    distribution's name and version when its ``.dist-info/METADATA`` is there."""
    files: dict[PurePosixPath, str] = {}
    metadata = None
    if location.is_file():
        with zipfile.ZipFile(location) as wheel:
            for name in wheel.namelist():
                path = PurePosixPath(name)
                if path.suffix == ".py" and not path.parts[0].endswith((".dist-info", ".data")):
                    files[path] = wheel.read(name).decode("utf-8")
                elif len(path.parts) == 2 and path.parts[0].endswith(".dist-info") and path.name == "METADATA":
                    metadata = wheel.read(name).decode("utf-8")
    else:
        root = location.parent if (location / "__init__.py").is_file() else location
        for path in sorted(location.rglob("*.py")):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if not relative.parts[0].endswith((".dist-info", ".data")):
                files[relative] = path.read_text(encoding="utf-8")
        for candidate in sorted(root.glob("*.dist-info/METADATA")):
            metadata = candidate.read_text(encoding="utf-8")
    modules = {}
    for path, source in files.items():
        parts = list(path.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (source, is_package)
    distribution = None
    if metadata is not None:
        headers = Parser().parse(io.StringIO(metadata), headersonly=True)
        distribution = {"name": headers["Name"], "version": headers["Version"]}
    return modules, distribution


def binding_statements(body: list[ast.stmt]):
    """The statements of a module or class body that bind names at its level, also inside ``if``/``try``/``with`` and
    loops (never inside a ``def`` or ``class``, whose names are their own), skipping ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.If):
            if ast.unparse(node.test) not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                yield from binding_statements(node.body)
            yield from binding_statements(node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from binding_statements(node.body)
            for handler in node.handlers:
                yield from binding_statements(handler.body)
            yield from binding_statements(node.orelse)
            yield from binding_statements(node.finalbody)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)):
            yield from binding_statements(node.body)
            yield from binding_statements(getattr(node, "orelse", []))
        else:
            yield node


def target_names(target: ast.expr) -> list[str]:
    """The names an assignment target binds (tuple unpacking included; attributes and subscripts bind none)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in target_names(element)]
    if isinstance(target, ast.Starred):
        return target_names(target.value)
    return []


def decorator_names_of(expression: ast.expr) -> str:
    """The last dotted component of a decorator or call: ``dataclasses.dataclass(init=False)`` -> ``dataclass``."""
    callee = expression.func if isinstance(expression, ast.Call) else expression
    return ast.unparse(callee).rpartition(".")[2]


def keyword_flag(expression: ast.expr, keyword: str, default: bool) -> bool:
    """The literal value of ``keyword=`` in a call (``dataclass(init=False)``), else the default."""
    for given in getattr(expression, "keywords", []):
        if given.arg == keyword:
            return bool(ast.literal_eval(given.value))
    return default


def decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[str]:
    """The last dotted component of each decorator, calls stripped: ``abc.abstractmethod`` -> ``abstractmethod``,
    ``x.setter`` -> ``setter``, ``dataclass(frozen=True)`` -> ``dataclass``."""
    return [decorator_names_of(decorator) for decorator in node.decorator_list]


def signature(arguments: ast.arguments) -> list[dict]:
    """The parameters of a ``def``, in order, with their kind and whether they have a default."""
    positional = arguments.posonlyargs + arguments.args
    first_default = len(positional) - len(arguments.defaults)
    parameters = [{"name": argument.arg, "kind": PARAMETER_KINDS[0 if index < len(arguments.posonlyargs) else 1],
                   "default": index >= first_default} for index, argument in enumerate(positional)]
    if arguments.vararg:
        parameters.append({"name": arguments.vararg.arg, "kind": "var-positional", "default": True})
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults):
        parameters.append({"name": argument.arg, "kind": "keyword-only", "default": default is not None})
    if arguments.kwarg:
        parameters.append({"name": arguments.kwarg.arg, "kind": "var-keyword", "default": True})
    return parameters


def is_member_name(name: str) -> bool:
    """Public names, hooks (one leading underscore) and ``__init__``; no other dunder, no name-mangled name."""
    return not name.startswith("__") or name == "__init__"


def describe_member(node: ast.stmt) -> dict[str, dict]:
    """{name: description} of what one statement of a class body defines."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        decorators = decorator_names(node)
        kind = "method"
        for decorator, member_kind in (("classmethod", "classmethod"), ("staticmethod", "staticmethod"),
                                       ("property", "property"), ("cached_property", "property"),
                                       ("setter", "property"), ("getter", "property"), ("deleter", "property")):
            if decorator in decorators:
                kind = member_kind
                break
        description = {"kind": kind, "abstract": "abstractmethod" in decorators,
                       "decorators": [ast.unparse(decorator) for decorator in node.decorator_list]}
        if kind != "property":
            description["signature"] = signature(node.args)
        return {node.name: description}
    if isinstance(node, ast.ClassDef):
        return {node.name: {"kind": "class", "abstract": False,
                            "decorators": [ast.unparse(decorator) for decorator in node.decorator_list]}}
    if isinstance(node, ast.AnnAssign):
        return {name: {"kind": "attribute", "abstract": False, "annotated": True, "assigned": node.value is not None}
                for name in target_names(node.target)}
    if isinstance(node, ast.Assign):
        return {name: {"kind": "attribute", "abstract": False, "annotated": False, "assigned": True}
                for target in node.targets for name in target_names(target)}
    return {}


class PackageParser:
    """Parses every module of one package once, expanding star imports between its modules on demand."""

    def __init__(self, sources: dict[str, tuple[str, bool]]):
        self.sources = sources
        self.trees = {module: ast.parse(source, filename=module) for module, (source, _) in sources.items()}
        self.parsed: dict[str, dict] = {}
        self.in_progress: set[str] = set()

    def absolute(self, module: str, level: int, name: str | None) -> str:
        """The absolute module name of ``from <level dots><name> import ...`` written in ``module``."""
        if not level:
            return name
        package = module.split(".") if self.sources[module][1] else module.split(".")[:-1]
        base = package[: len(package) - level + 1]
        return ".".join(base + ([name] if name else []))

    def star_names(self, module: str) -> list[str]:
        """What ``from module import *`` binds."""
        parsed = self.parse(module)
        if parsed["__all__"] is not None:
            return parsed["__all__"]
        return sorted(name for name in parsed["names"] if not name.startswith("_"))

    def parse(self, module: str) -> dict:
        if module in self.parsed:
            return self.parsed[module]
        if module in self.in_progress:
            raise SystemExit(f"the imports this script follows form a cycle through {module}")
        self.in_progress.add(module)
        names: dict[str, dict] = {}
        dunder_all = None
        unresolved = []
        for node in binding_statements(self.trees[module].body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[node.name] = {"kind": "function", "signature": signature(node.args),
                                    "decorators": [ast.unparse(decorator) for decorator in node.decorator_list]}
            elif isinstance(node, ast.ClassDef):
                names[node.name] = self.describe_class(module, node, names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = {"kind": "import", "source": {"module": alias.name}}
                    else:
                        top = alias.name.split(".")[0]
                        names[top] = {"kind": "import", "source": {"module": top}}
            elif isinstance(node, ast.ImportFrom):
                source = self.absolute(module, node.level, node.module)
                for alias in node.names:
                    if alias.name != "*":
                        names[alias.asname or alias.name] = {"kind": "import",
                                                             "source": {"module": source, "name": alias.name}}
                    elif source in self.sources:
                        for name in self.star_names(source):
                            names[name] = {"kind": "import", "source": {"module": source, "name": name}}
                    else:
                        unresolved.append(source)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound = [name for target in targets for name in target_names(target)]
                if "__all__" in bound:
                    dunder_all = self.updated_all(module, node, dunder_all)
                if isinstance(node, ast.AugAssign) or (isinstance(node, ast.AnnAssign) and node.value is None):
                    continue  # Rebinds an existing name, or annotates without binding.
                for name in bound:
                    names[name] = {"kind": "value"}
                    if isinstance(node.value, ast.Name) and node.value.id in names:
                        names[name]["alias_of"] = node.value.id
            elif isinstance(node, ast.Delete):
                for target in node.targets:
                    for name in target_names(target):
                        names.pop(name, None)
        self.in_progress.discard(module)
        self.parsed[module] = {"__all__": dunder_all, "names": names, "unresolved_star_imports": sorted(unresolved)}
        return self.parsed[module]

    @staticmethod
    def updated_all(module: str, node: ast.stmt, current: list[str] | None) -> list[str]:
        """``__all__`` after ``__all__ = [...]`` or ``__all__ += [...]``; anything cleverer stops the script, rather
        than a fixture that is silently wrong."""
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise SystemExit(f"{module}: __all__ is not a literal list of strings: {ast.unparse(node)}") from None
        if isinstance(node, ast.AugAssign):
            return list(current or []) + list(value)
        return list(value)

    def describe_class(self, module: str, node: ast.ClassDef, names: dict[str, dict]) -> dict:
        members: dict[str, dict] = {}
        for statement in binding_statements(node.body):
            for name, description in describe_member(statement).items():
                if is_member_name(name):
                    members[name] = description
        decorators = decorator_names(node)
        dataclass_call = next((d for d in node.decorator_list if decorator_names_of(d) == "dataclass"), None)
        description = {"kind": "class", "bases": [ast.unparse(base) for base in node.bases]
                       + [ast.unparse(keyword) for keyword in node.keywords],
                       "decorators": [ast.unparse(decorator) for decorator in node.decorator_list],
                       "dataclass": "dataclass" in decorators, "members": members}
        if dataclass_call is not None and "__init__" not in members and keyword_flag(dataclass_call, "init", True):
            fields = self.dataclass_fields(module, node, names)
            positional = [{"name": name, "kind": "positional-or-keyword", "default": default}
                          for name, (default, keyword_only) in fields.items() if not keyword_only]
            keyword = [{"name": name, "kind": "keyword-only", "default": default}
                       for name, (default, keyword_only) in fields.items() if keyword_only]
            members["__init__"] = {"kind": "method", "abstract": False, "decorators": [], "synthesized": "dataclass",
                                   "signature": [{"name": "self", "kind": "positional-or-keyword", "default": False}]
                                   + positional + keyword}
        return description

    def dataclass_fields(self, module: str, node: ast.ClassDef, names: dict[str, dict]) -> dict[str, tuple[bool, bool]]:
        """{field: (has a default, keyword-only)} of a dataclass, its dataclass bases in the package included."""
        fields: dict[str, tuple[bool, bool]] = {}
        for base in reversed(node.bases):
            base_node, base_module, base_names = self.find_class(module, ast.unparse(base).split("[")[0], names)
            if base_node is not None and any(decorator_names_of(d) == "dataclass" for d in base_node.decorator_list):
                fields.update(self.dataclass_fields(base_module, base_node, base_names))
        dataclass_call = next(d for d in node.decorator_list if decorator_names_of(d) == "dataclass")
        keyword_only = keyword_flag(dataclass_call, "kw_only", False)
        for statement in binding_statements(node.body):
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            annotation = ast.unparse(statement.annotation)
            if annotation.split("[")[0].rpartition(".")[2] == "ClassVar":
                continue
            if annotation.rpartition(".")[2] == "KW_ONLY":
                keyword_only = True
                continue
            default, field_keyword_only = statement.value is not None, keyword_only
            if isinstance(statement.value, ast.Call) and decorator_names_of(statement.value) == "field":
                given = {keyword.arg for keyword in statement.value.keywords}
                default = bool(given & {"default", "default_factory"})
                field_keyword_only = keyword_flag(statement.value, "kw_only", keyword_only)
            fields[statement.target.id] = (default, field_keyword_only)  # A redefined field keeps its place.
        return fields

    def find_class(self, module: str, name: str, names: dict[str, dict]):
        """The ``ClassDef`` that ``name`` means in ``module`` (following imports within the package), with its module
        and that module's names; (None, None, None) for classes outside the package."""
        entry = names.get(name)
        if entry is None or "." in name:
            return None, None, None
        if entry["kind"] == "import" and entry["source"].get("name") and entry["source"]["module"] in self.sources:
            source = entry["source"]["module"]
            return self.find_class(source, entry["source"]["name"], self.parse(source)["names"])
        if entry["kind"] == "class":
            found = None
            for statement in binding_statements(self.trees[module].body):
                if isinstance(statement, ast.ClassDef) and statement.name == name:
                    found = statement  # The last definition wins, as at runtime.
            return found, module, names
        return None, None, None


def published_api(location: Path) -> dict:
    sources, distribution = read_sources(location)
    parser = PackageParser(sources)
    modules = {}
    for module in sorted(sources):
        parsed = parser.parse(module)
        public = {name: entry for name, entry in parsed["names"].items() if not name.startswith("_")}
        modules[module] = {"__all__": parsed["__all__"], "names": public,
                           "unresolved_star_imports": parsed["unresolved_star_imports"]}
    return {"distribution": distribution, "generated_by": "tools/published_api.py", "modules": modules}


def main(location: Path, output: Path) -> None:
    api = published_api(location)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(api, sort_keys=True, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
