"""The compat facade: the era matches the installed transformers, every era module satisfies the written contract
(its members, with the protocol's signatures, read from source), archit/ itself stays off transformers' version
number, private names and import guards, and the era workarounds that live in compat do their work."""
import ast
import inspect
import typing
from pathlib import Path

import pytest
import transformers

from archit import _compat as compat_package
from archit._compat import all_eras
from archit.instantiation.abstracts import ModelWithHead
from archit.instantiation.extensions import ForTokensGroupedByWord
from archit.instantiation.multihead import ModelWithHeads

from tests.helpers import expected_era

ARCHIT_DIR = Path(__file__).resolve().parent.parent / "archit"
P = inspect.Parameter


def test_era_matches_installed_transformers():
    assert compat_package.ERA == expected_era()


def test_backend_satisfies_protocol():
    assert getattr(compat_package.Backend, "_is_protocol", False), "Backend must be a typing.Protocol"
    assert typing.Protocol in compat_package.Backend.__mro__
    assert isinstance(compat_package.backend, compat_package.Backend)


def test_protocol_is_not_trivially_satisfied():
    """The runtime check must actually look at members: an empty object does not pass it."""
    assert not isinstance(object(), compat_package.Backend)


def test_every_era_module_satisfies_the_protocol_with_only_what_differs():
    """Each era module provides every member of the contract itself; helpers that are the same in every era are not
    re-exported by the era modules but come from ``all_eras`` through the facade."""
    members = {name for name in vars(compat_package.Backend) if not name.startswith("_")} | set(
        typing.get_type_hints(compat_package.Backend))
    shared = {name for name, value in vars(all_eras).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == all_eras.__name__}
    assert not members & shared, f"the protocol lists helpers that are the same in every era: {members & shared}"
    backend = compat_package.backend
    for name in members:
        assert hasattr(backend, name), f"{backend.__name__} lacks {name}"
    for name in set(compat_package.__all__) & shared:  # the facade takes shared helpers from all_eras, not from the era
        assert getattr(compat_package, name) is getattr(all_eras, name), name
    for name in compat_package.__all__:
        assert hasattr(compat_package, name), name


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
# The era modules against the protocol's signatures. Every era module is read from its source (ast), whichever
# transformers is installed: another era's module imports internals this release lacks, and a drift in any era must
# fail the suite on every era. The protocol is read from its source too, so that both sides are compared alike.

COMPAT_DIR = Path(compat_package.__file__).resolve().parent
ERA_MODULES = sorted(COMPAT_DIR.glob("tf*.py"))


class Default:
    """A parameter's default as its source text (``None``, ``1``, ``"sdpa"``): equal when the text is."""

    def __init__(self, node: ast.expr):
        self.source = ast.unparse(node)

    def __eq__(self, other) -> bool:
        return isinstance(other, Default) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return self.source


def signature_of(node: ast.FunctionDef, drop_self: bool = False) -> inspect.Signature:
    """The signature of a function definition as names, kinds and defaults (annotations left out: an era may spell a
    type its own way)."""
    args = node.args
    positional = [(a, P.POSITIONAL_ONLY) for a in args.posonlyargs] + [(a, P.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [P.empty] * (len(positional) - len(args.defaults)) + [Default(d) for d in args.defaults]
    parameters = [P(a.arg, kind, default=default) for (a, kind), default in zip(positional, defaults)]
    if args.vararg:
        parameters.append(P(args.vararg.arg, P.VAR_POSITIONAL))
    parameters += [P(a.arg, P.KEYWORD_ONLY, default=P.empty if d is None else Default(d))
                   for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        parameters.append(P(args.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(parameters[1:] if drop_self else parameters)


def protocol_members(source: str) -> tuple[dict[str, inspect.Signature], dict[str, str]]:
    """The ``Backend`` protocol in ``source``: its methods (name -> signature without ``self``) and its attributes
    (name -> annotation)."""
    backend = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "Backend")
    methods = {node.name: signature_of(node, drop_self=True) for node in backend.body
               if isinstance(node, ast.FunctionDef)}
    attributes = {node.target.id: ast.unparse(node.annotation) for node in backend.body
                  if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    return methods, attributes


def top_level_bindings(source: str, module: str) -> dict[str, ast.AST]:
    """What a module's top level binds: name -> its ``def``/``class`` node, the value of its assignment, or the
    ``import`` statement it comes from."""
    bindings = {}
    for node in ast.parse(source, module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bindings[node.name] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bindings.update({alias.asname or alias.name.split(".")[0]: node for alias in node.names})
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bindings.update({target.id: node.value for target in targets if isinstance(target, ast.Name)})
    return bindings


def _imported_signature(node: ast.ImportFrom, name: str) -> inspect.Signature | None:
    """The signature of a function an era module imports from ``all_eras`` (the same module on every era, so its
    source can be read here); ``None`` for one from transformers (checked on its own era, below)."""
    if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "all_eras"):
        return None
    original = next(alias.name for alias in node.names if (alias.asname or alias.name) == name)
    definition = ast.parse(inspect.getsource(getattr(compat_package.all_eras, original))).body[0]
    return signature_of(definition)


def _is_string_expression(node: object) -> bool:
    """A string literal, or a choice between string literals (``"a" if feature else "b"``: feature detection)."""
    if isinstance(node, ast.IfExp):
        return _is_string_expression(node.body) and _is_string_expression(node.orelse)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def era_module_problems(source: str, module: str, protocol_source: str) -> list[str]:
    """How an era module's source departs from the protocol's: a member it lacks, an attribute of another kind, a
    function whose parameters differ in names, kinds or defaults, a public function the protocol does not list."""
    methods, attributes = protocol_members(protocol_source)
    bindings = top_level_bindings(source, module)
    problems = [f"{module} lacks {name}" for name in sorted({*methods, *attributes} - set(bindings))]
    for name, annotation in sorted(attributes.items()):
        value = bindings.get(name)
        if annotation == "str" and not _is_string_expression(value):
            problems.append(f"{module}.{name} is not a string")
        if annotation in ("type", "Type[Any]") and not isinstance(value, (ast.ClassDef, ast.ImportFrom, ast.Import, type(None))):
            problems.append(f"{module}.{name} is not a class")
    for name, declared in sorted(methods.items()):
        node = bindings.get(name)
        if node is None:
            continue
        if isinstance(node, ast.FunctionDef):
            actual = signature_of(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            actual = _imported_signature(node, name)
            if actual is None:  # transformers' own function: test_the_active_backends_members_accept_...
                continue
        else:
            problems.append(f"{module}.{name} is not a function defined or imported there")
            continue
        if actual != declared:
            problems.append(f"{module}.{name}{actual} differs from the protocol's {name}{declared}")
    extra = [name for name, node in bindings.items() if isinstance(node, ast.FunctionDef)
             and not name.startswith("_") and name not in methods]
    problems += [f"{module}.{name} is not in the protocol (helpers of the module are private)" for name in extra]
    return problems


def test_there_is_an_era_module_per_era():
    main_source = (COMPAT_DIR / "main.py").read_text()
    assert [path.stem for path in ERA_MODULES] == ["tf436", "tf450", "tf500"]
    for path in ERA_MODULES:
        assert f"import {path.stem} as backend" in main_source, f"main.py never picks {path.stem}"


def test_the_protocol_read_from_source_is_the_one_python_sees():
    """The source reading below (ast) finds exactly the members and signatures of the ``Backend`` class itself."""
    methods, attributes = protocol_members((COMPAT_DIR / "protocol.py").read_text())
    backend = compat_package.Backend
    assert set(attributes) == set(typing.get_type_hints(backend)) - set(methods)
    assert set(methods) == {name for name, value in vars(backend).items()
                            if not name.startswith("_") and inspect.isfunction(value)}
    for name, signature in methods.items():
        parameters = list(inspect.signature(getattr(backend, name)).parameters.values())[1:]
        assert [(p.name, p.kind) for p in parameters] == [(p.name, p.kind) for p in signature.parameters.values()]
        assert [p.default is P.empty or repr(p.default) for p in parameters] == \
            [p.default is P.empty or repr(p.default) for p in signature.parameters.values()], name


@pytest.mark.parametrize("path", ERA_MODULES, ids=lambda path: path.stem)
def test_every_era_module_has_the_protocols_signatures(path):
    """Each era module (read from source: another era's module cannot be imported on this transformers) has every
    member of the protocol, its functions with the protocol's parameters: the same names, kinds and defaults."""
    problems = era_module_problems(path.read_text(), path.stem, (COMPAT_DIR / "protocol.py").read_text())
    assert not problems


def test_the_active_backends_members_accept_the_protocols_calls():
    """On the installed era, also what the backend takes from transformers (``no_init_weights``), which has no
    signature in its source: each accepts every call the protocol declares (its parameters, extra ones optional)."""
    methods, _ = protocol_members((COMPAT_DIR / "protocol.py").read_text())
    for name, declared in methods.items():
        parameters = inspect.signature(getattr(compat_package.backend, name)).parameters.values()
        actual = {p.name for p in parameters}
        variadic = {p.kind for p in parameters} & {P.VAR_POSITIONAL, P.VAR_KEYWORD}
        for parameter in declared.parameters.values():
            assert parameter.name in actual or variadic, f"{name} lacks {parameter.name}"
        extra = [p for p in parameters if p.name not in declared.parameters and p.kind not in variadic]
        assert all(p.default is not P.empty for p in extra), f"{name} requires {extra}, which the protocol lacks"


@pytest.mark.parametrize("drift, old, new, found", [
    ("renamed", "def set_config_dtype(config: PretrainedConfig, dtype",
     "def set_config_dtype(config: PretrainedConfig, torch_dtype", "set_config_dtype(config, torch_dtype) differs"),
    ("default dropped", "key_mapping: Optional[Mapping[str, str]] = None)",
     "key_mapping: Optional[Mapping[str, str]])", "convert_checkpoint(model, keys, get_tensor, key_mapping) differs"),
    ("default changed", "key_mapping: Optional[Mapping[str, str]] = None)",
     "key_mapping: Optional[Mapping[str, str]] = {})", "get_tensor, key_mapping={}) differs"),
    ("keyword-only", "def checkpoint_layout(model: PreTrainedModel, state_dict",
     "def checkpoint_layout(model: PreTrainedModel, *, state_dict", "checkpoint_layout(model, *, state_dict) differs"),
    ("missing", "def as_auto_model_class(", "def as_auto_model_class_renamed(", "tf436 lacks as_auto_model_class"),
    ("extra parameter", "def modernbert_config_class()", "def modernbert_config_class(config)",
     "modernbert_config_class(config) differs"),
    ("extra **kwargs", "def modernbert_config_class()", "def modernbert_config_class(**kwargs)",
     "modernbert_config_class(**kwargs) differs"),
    ("not a string", 'ERA = "4.36"', "ERA = 4.36", "ERA is not a string"),
    ("not a class", "class PreTrainedWrapper(", "PreTrainedWrapper = 1\n\n\nclass _PreTrainedWrapper(",
     "PreTrainedWrapper is not a class"),
    ("assigned", "def set_attn_implementation(", "set_attn_implementation = print\ndef _set_attn_implementation(",
     "set_attn_implementation is not a function defined or imported there"),
    ("imported from all_eras, another signature", "\ndef checkpoint_layout(",
     "\nfrom .all_eras import progress as checkpoint_layout\n\n\ndef _checkpoint_layout(",
     "checkpoint_layout(items, total, description, tensors, nbytes) differs"),
    ("public helper", "def as_auto_model_class(", "def helper():\n    pass\n\n\ndef as_auto_model_class(",
     "tf436.helper is not in the protocol"),
])
def test_the_signature_check_sees_a_drift(drift, old, new, found):
    """The check itself, on tf436's source changed in one place: every kind of departure is found, and named."""
    source, protocol = (COMPAT_DIR / "tf436.py").read_text(), (COMPAT_DIR / "protocol.py").read_text()
    assert not era_module_problems(source, "tf436", protocol)
    assert source.count(old) == 1, f"the test's text for '{drift}' no longer matches tf436.py once"
    problems = era_module_problems(source.replace(old, new), "tf436", protocol)
    assert any(found in problem for problem in problems), f"{drift}: {problems}"


def test_the_signature_check_sees_a_drift_of_the_protocol():
    """And the other way: a parameter added to the protocol alone is a drift of every era module."""
    protocol = (COMPAT_DIR / "protocol.py").read_text()
    old = "def no_init_weights(self)"
    assert protocol.count(old) == 1
    changed = protocol.replace(old, "def no_init_weights(self, enable: bool = True)")
    for path in ERA_MODULES:
        assert not era_module_problems(path.read_text(), path.stem, protocol)
    assert era_module_problems((COMPAT_DIR / "tf436.py").read_text(), "tf436", changed) == []  # transformers' own
    changed = protocol.replace("def as_auto_model_class(self, model_class: type)",
                               "def as_auto_model_class(self, model_class: type, generation: bool = False)")
    for path in ERA_MODULES:
        problems = era_module_problems(path.read_text(), path.stem, changed)
        assert problems == [f"{path.stem}.as_auto_model_class(model_class) differs from the protocol's "
                            f"as_auto_model_class(model_class, generation=False)"], problems


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
