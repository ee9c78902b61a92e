"""The compat facade: the era matches the installed transformers, the backend satisfies the written contract, and
archit/ itself stays off transformers' version number and private names."""
import ast
import typing
from pathlib import Path

from conftest import expected_era

ARCHIT_DIR = Path(__file__).resolve().parent.parent / "archit"


def test_era_matches_installed_transformers():
    import compat
    assert compat.ERA == expected_era()


def test_backend_satisfies_protocol():
    import compat
    assert getattr(compat.Backend, "_is_protocol", False), "Backend must be a typing.Protocol"
    assert typing.Protocol in compat.Backend.__mro__
    assert isinstance(compat.backend, compat.Backend)


def test_protocol_is_not_trivially_satisfied():
    """The runtime check must actually look at members: an empty object does not pass it."""
    import compat
    assert not isinstance(object(), compat.Backend)


def _archit_sources():
    paths = sorted(ARCHIT_DIR.rglob("*.py"))
    assert paths, f"no Python files under {ARCHIT_DIR}"
    return paths


def test_archit_never_reads_the_transformers_version():
    offenders = []
    for path in _archit_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "__version__":
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers") \
                    and any(alias.name == "__version__" for alias in node.names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"archit/ reads a version number (that is compat's job): {offenders}"


def test_archit_imports_no_private_transformers_names():
    offenders = []
    for path in _archit_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                private += [part for part in node.module.split(".") if part.startswith("_")]
                if private:
                    offenders.append(f"{path.name}:{node.lineno} {private}")
    assert not offenders, f"archit/ imports private transformers names (only compat/ may): {offenders}"
