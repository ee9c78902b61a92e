"""The compat facade: the era matches the installed transformers, the backend satisfies the written contract, and
archit/ itself stays off transformers' version number and private names."""
import ast
import inspect
import typing
from pathlib import Path

import transformers

from archit import _compat as compat_package
from archit.instantiation.abstracts import ModelWithHead
from archit.instantiation.extensions import ForTokensGroupedByWord
from archit.instantiation.multihead import ModelWithHeads

from conftest import expected_era

ARCHIT_DIR = Path(__file__).resolve().parent.parent / "archit"
P = inspect.Parameter


def test_era_matches_installed_transformers():
    from archit import _compat as compat
    assert compat.ERA == expected_era()


def test_backend_satisfies_protocol():
    from archit import _compat as compat
    assert getattr(compat.Backend, "_is_protocol", False), "Backend must be a typing.Protocol"
    assert typing.Protocol in compat.Backend.__mro__
    assert isinstance(compat.backend, compat.Backend)


def test_protocol_is_not_trivially_satisfied():
    """The runtime check must actually look at members: an empty object does not pass it."""
    from archit import _compat as compat
    assert not isinstance(object(), compat.Backend)


def test_every_era_module_satisfies_the_protocol_with_only_what_differs():
    """Each era module provides every member of the contract itself; helpers that are the same in every era are not
    re-exported by the era modules but come from ``all_eras`` through the facade."""
    from archit._compat import all_eras

    from archit import _compat as compat

    members = {name for name in vars(compat.Backend) if not name.startswith("_")} | set(
        typing.get_type_hints(compat.Backend))
    shared = {name for name, value in vars(all_eras).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == all_eras.__name__}
    assert not members & shared, f"the protocol lists helpers that are the same in every era: {members & shared}"
    backend = compat.backend
    for name in members:
        assert hasattr(backend, name), f"{backend.__name__} lacks {name}"
    for name in set(compat.__all__) & shared:  # the facade takes shared helpers from all_eras, not from the era
        assert getattr(compat, name) is getattr(all_eras, name), name
    for name in compat.__all__:
        assert hasattr(compat, name), name


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


def test_archit_guards_no_transformers_import():
    """Whether a transformers module exists is a question for compat (``compat.modernbert_config_class()``): archit/
    has no ``try: import transformers...`` that tells releases apart."""
    offenders = []
    for path in _archit_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Try):
                imports = [n for statement in node.body for n in ast.walk(statement)
                           if isinstance(n, (ast.Import, ast.ImportFrom))]
                modules = [n.module or "" for n in imports if isinstance(n, ast.ImportFrom)]
                modules += [alias.name for n in imports if isinstance(n, ast.Import) for alias in n.names]
                if any(module.split(".")[0] == "transformers" for module in modules):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"archit/ guards transformers imports (ask compat instead): {offenders}"


# ---------------------------------------------------------------------------------------------------------------------
# Era workarounds that live in compat.

def test_hide_kwargs_from_signature_hides_them_from_the_trainer_but_not_from_calls():
    """transformers 4.47's Trainer passes num_items_in_batch when ``inspect.signature(model.forward)`` has a ``**``
    parameter (4.46 when it is named ``loss_kwargs``); the decorated method advertises none, and still takes them."""
    class Model:
        @compat_package.hide_kwargs_from_signature
        def forward(self, input_ids, labels=None, **kwargs):
            return kwargs

    forward = Model().forward
    assert [p.name for p in inspect.signature(forward).parameters.values()] == ["input_ids", "labels"]
    assert not any(p.kind is P.VAR_KEYWORD for p in inspect.signature(forward).parameters.values())  # 4.47's test
    assert forward(1, output_hidden_states=True) == {"output_hidden_states": True}
    assert inspect.unwrap(Model.forward) is Model.forward  # The function itself: no wrapper in the call path.


def test_archits_forwards_hide_their_kwargs():
    for cls in (ModelWithHead, ForTokensGroupedByWord, ModelWithHeads):
        assert "__signature__" in vars(cls.forward), cls.__name__
        assert P.VAR_KEYWORD not in {p.kind for p in inspect.signature(cls.forward).parameters.values()}, cls.__name__
        assert cls.accepts_loss_kwargs is False, cls.__name__  # What 4.48+ read instead.


def test_modernbert_config_class_is_transformers_own_or_none():
    config_class = compat_package.modernbert_config_class()
    if hasattr(transformers, "ModernBertConfig"):
        assert config_class is transformers.ModernBertConfig
    else:
        assert config_class is None
