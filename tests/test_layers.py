"""The house rules of archit's layout, checked on the source: imports run one way (the API in ``instantiation``,
``util`` and ``declaration`` uses ``loading``, which uses ``_compat``), every import sits at the top of its module, and
the compat folder is importable only as archit's own package (never as a top-level ``compat``)."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = {"archit": REPO / "archit", "archit._compat": REPO / "compat"}

# Higher layers may import lower ones, never the reverse. The package root holds only the version and re-exports. The
# command (archit.cli) uses the API, and ``python -m archit`` (archit.__main__) runs the command.
LAYERS = {"archit._compat": 0, "archit.loading": 1, "archit.instantiation": 2, "archit.util": 2,
          "archit.declaration": 2, "archit": 3, "archit.cli": 3, "archit.__main__": 4}
# The package root defines its version before it imports anything, so every layer may read it.
ROOT_CONSTANTS = {"archit.__version__"}
# The one module whose imports sit in its functions, deliberately: the command's parser imports each command's module
# (and with it torch and transformers) when that command runs, so that `archit --help` and `--version` answer at once
# (tests/test_cli_guidance.py checks that neither is imported).
LAZY_IMPORTS = {"archit/cli/main.py"}


def _modules():
    """(dotted module name, path) of every module of archit, the compat folder under its installed name."""
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if package == "archit" and path.is_relative_to(SOURCES["archit._compat"]):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def _imported_modules(module: str, path: Path, node: ast.AST):
    """The archit modules an import statement names, resolved to absolute names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "archit"]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "archit":
        return []
    modules = {name for name, _ in _modules()}
    return [f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names] \
        + [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in ROOT_CONSTANTS]


def _layer(module: str) -> tuple:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)
    return best, LAYERS[best]


def _parents(tree: ast.AST):
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            yield child, parent


def test_every_import_is_at_the_top_of_its_module():
    """No import hidden in a function or class (the way a cycle gets dodged)."""
    offenders = []
    for module, path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node, parent in _parents(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and isinstance(
                    parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and str(path.relative_to(REPO)) not in LAZY_IMPORTS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"imports below module level: {offenders}"


def test_imports_run_one_way():
    offenders = []
    for module, path in _modules():
        own_layer, own_rank = _layer(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported_modules(module, path, node):
                if target in ROOT_CONSTANTS or (target == "archit" and any(
                        f"archit.{alias.name}" in ROOT_CONSTANTS for alias in node.names)):
                    continue
                layer, rank = _layer(target)
                if layer != own_layer and rank >= own_rank:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} ({own_layer}) imports {target}")
    assert not offenders, f"imports against the layering {LAYERS}: {offenders}"


def test_layering_check_sees_an_upward_import(tmp_path):
    """The check above is able to fail: an upward import in a loading module is resolved to its layer."""
    path = SOURCES["archit"] / "loading" / "loader.py"
    node = ast.parse("from ..instantiation.configs import CombinedConfig").body[0]
    targets = _imported_modules("archit.loading.loader", path, node)
    assert targets == ["archit.instantiation.configs"]
    assert _layer(targets[0])[1] > _layer("archit.loading.loader")[1]


def test_a_users_compat_module_does_not_shadow_archits(tmp_path):
    """A ``compat.py`` in the working directory (a common file name) is the user's, and archit does not import it."""
    (tmp_path / "compat.py").write_text("raise ImportError('the user compat.py was imported by archit')\n")
    script = textwrap.dedent("""
        from transformers import RobertaConfig
        from archit.instantiation.basemodels import RobertaBaseModel
        from archit.instantiation.heads import TokenClassificationHeadConfig
        from archit.instantiation.tasks import ForSingleLabelTokenClassification
        config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=40)
        model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
            RobertaBaseModel(config), TokenClassificationHeadConfig(num_labels=3))
        import sys
        assert "compat" not in sys.modules
        print(type(model).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ForSingleLabelTokenClassification"


def test_installed_distribution_has_only_archit_top_level_names(tmp_path):
    """What the installed distribution puts on the path: archit alone (run outside the repository, whose top-level
    compat/ folder would otherwise be importable from the working directory)."""
    script = textwrap.dedent("""
        import importlib.metadata, importlib.util
        distribution = importlib.metadata.distribution("archit")
        print((distribution.read_text("top_level.txt") or "").split())
        modules = sorted({str(f).split("/")[0] for f in distribution.files or [] if str(f).endswith(".py")
                          and not str(f).startswith("__editable__") and ".dist-info" not in str(f)})
        print(modules)
        print(importlib.util.find_spec("compat") is None, importlib.util.find_spec("archit._compat") is not None)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    top_level, modules, importable = done.stdout.strip().splitlines()
    assert top_level == "['archit']"
    assert modules in ("[]", "['archit']")  # [] for an editable install, whose files are the path hooks
    assert importable == "True True"
