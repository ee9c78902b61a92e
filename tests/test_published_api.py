"""The API of the published ArchIt (PyPI ``archit`` 2026.4.1) is a contract that downstream code (LaMoTO) imports,
calls and subclasses. ``data/published_api.json`` lists it, parsed from the published wheel by
``tools/published_api.py`` (never imported: it runs only on transformers<=4.49); regenerate it with

    pip download --no-deps archit==2026.4.1 && python tools/published_api.py archit-2026.4.1-py3-none-any.whl \
        tests/data/published_api.json

One case per published module (``module:*``: it imports, and ``from module import *`` binds every name the published
one bound), per module-level name (``module:Name``) and per class member (``module:Class.member``):

- every name resolves at the same module path; a name the published module imported from another of its own modules
  is the very object that module holds here (a re-exported class is the same class, so ``isinstance`` agrees), and an
  alias (``Old = New``) is still the object it names;
- a function or method accepts every call the published signature accepts: each published parameter exists with a
  compatible kind at the same position (or ``*args``/``**kwargs`` take it), nothing optional there is required here,
  nothing required here is unknown there; methods keep their kind (method, classmethod, staticmethod, property), and
  nothing concrete there is abstract here (a subclass that did not override it would no longer instantiate);
- a class is a class, derives from the published bases that can be resolved here, is a dataclass where the published
  one was, and defines or inherits every published member, hooks (one leading underscore) included; dataclass fields
  count as members.

The signature check itself is held to Python's own binding of calls (``test_signature_check_agrees_with_python``).
"""
import builtins
import dataclasses
import functools
import importlib
import inspect
import itertools
import json
import os
import types
from abc import ABC, ABCMeta
from pathlib import Path

import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging import version

FIXTURE = Path(__file__).resolve().parent / "data" / "published_api.json"
API = json.loads(FIXTURE.read_text(encoding="utf-8"))
PACKAGE = "archit"
THOROUGH = os.environ.get("ARCHIT_THOROUGH") == "1"  # nox -t fuzz: ten times the examples of the signature check.

# Published names archit deliberately does not provide, with the reason: "module:Name", "module:Class.member" or
# "module:*" (the case ids) -> why. An entry's case is skipped with its problems while they last; an entry whose case
# passes fails as stale. It starts empty: each failure is fixed in archit, or listed here with its reason.
NOT_PROVIDED: dict[str, str] = {
    # transformers' private loading hook, overridden by the published ArchIt with the signature of 4.36-4.49 (which is
    # why it broke on 4.50+); archit loads weights itself, and PreTrainedModel.from_pretrained on an archit task goes
    # through archit's loader, so nothing calls an override. README: "Where archit differs from the published ArchIt".
    "archit.instantiation.abstracts:ModelWithHead._load_pretrained_model":
        "transformers' private loader hook, era-specific; archit loads weights itself",
}
# supar's modules, which the published extensions module imported at its top (making supar a hard dependency): archit's
# parser does not need supar, and archit never imports it (tests/test_tasks_extended.py).
# transformers' ModernBertModel, which the published basemodels module imported: releases before 4.48 have no ModernBERT.
if version.parse(transformers.__version__) < version.parse("4.48"):
    NOT_PROVIDED["archit.instantiation.basemodels:ModernBertModel"] = "transformers' own class, added in 4.48"
NOT_PROVIDED.update({f"archit.instantiation.extensions:{name}": "supar's; archit never imports supar"
                     for name in ("snn", "pad", "*")})

P = inspect.Parameter
KINDS = {"positional-only": P.POSITIONAL_ONLY, "positional-or-keyword": P.POSITIONAL_OR_KEYWORD,
         "var-positional": P.VAR_POSITIONAL, "keyword-only": P.KEYWORD_ONLY, "var-keyword": P.VAR_KEYWORD}
POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
VARIADIC = (P.VAR_POSITIONAL, P.VAR_KEYWORD)
BOUND_KINDS = ("method", "classmethod")  # Their first parameter (self, cls) is never passed by the caller.
MISSING = object()
ABSORBED = "absorbed"  # An argument that lands in our *args or **kwargs.


def _cases():
    for module, published in sorted(API["modules"].items()):
        yield module, "*"
        for name, entry in sorted(published["names"].items()):
            yield module, name
            for member in sorted(entry.get("members", {})):
                yield module, f"{name}.{member}"


CASES = [pytest.param(module, name, id=f"{module}:{name}") for module, name in _cases()]


# ---------------------------------------------------------------------------------------------------------------------
# Resolving names here.

def _import(module: str):
    """Our module of that name, or the reason it cannot be had."""
    try:
        return importlib.import_module(module), None
    except Exception as error:  # The module's own import error is the finding.
        return None, f"module {module} does not import: {type(error).__name__}: {error}"


def _source_object(source: dict):
    """What an import of the published module binds, resolved here (our archit for the package's own modules)."""
    try:
        module = importlib.import_module(source["module"])
    except Exception:  # An optional dependency of the published package (supar) that is not installed.
        return MISSING
    if "name" not in source:
        return module
    found = getattr(module, source["name"], MISSING)
    if found is MISSING:
        try:
            found = importlib.import_module(f"{source['module']}.{source['name']}")
        except Exception:
            return MISSING
    return found


def _published_expression(module: str, written: str):
    """What a dotted name written in the published module (a base class) means here, or MISSING."""
    head, *rest = written.split(".")
    entry = API["modules"][module]["names"].get(head)
    if entry is None:
        found = getattr(builtins, head, MISSING)
    elif entry["kind"] == "import":
        found = _source_object(entry["source"])
    else:
        ours, _ = _import(module)
        found = getattr(ours, head, MISSING) if ours is not None else MISSING
    for part in rest:
        found = getattr(found, part, MISSING)
    return found


def _is_package_module(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


# ---------------------------------------------------------------------------------------------------------------------
# Signatures.

def _member_kind(raw) -> str:
    """The kind of a class attribute as ``inspect.getattr_static`` finds it, in the fixture's words."""
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, (property, functools.cached_property)):
        return "property"
    if isinstance(raw, type):
        return "class"
    if callable(raw):
        return "method"
    return "attribute"


def signature_problems(published: list[dict], ours: list[inspect.Parameter]) -> list[str]:
    """How our parameters refuse, or misroute, a call that the published parameters accept, or leave one of ours
    unset; empty when every published call works here. Each published argument, passed each way the published
    allows (by position, by keyword), must land on our parameter of that name (any name for a positional-only one), or
    in our ``*args``/``**kwargs`` where we have no parameter to take it; what is optional there must be optional
    here, and what is required here must be filled by every such call."""
    our_positional = [parameter for parameter in ours if parameter.kind in POSITIONAL]
    our_keywords = {parameter.name: parameter for parameter in ours
                    if parameter.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    our_names = {parameter.name for parameter in ours if parameter.kind not in VARIADIC}
    var_positional = any(parameter.kind is P.VAR_POSITIONAL for parameter in ours)
    var_keyword = any(parameter.kind is P.VAR_KEYWORD for parameter in ours)
    published_positional = [parameter for parameter in published if KINDS[parameter["kind"]] in POSITIONAL]

    problems = []
    landings = {}  # Published name -> {"position"/"keyword": our parameter, ABSORBED (*args, **kwargs) or None}.
    explained = set()  # Published names with a problem reported.
    for parameter in published:
        name, kind = parameter["name"], KINDS[parameter["kind"]]
        if kind in VARIADIC:
            if not (var_positional if kind is P.VAR_POSITIONAL else var_keyword):
                problems.append(f"no {'*' if kind is P.VAR_POSITIONAL else '**'}{name}")
            elif kind is P.VAR_POSITIONAL and len(our_positional) > len(published_positional):
                problems.append(f"extra positional arguments (*{name} in the published) land on "
                                f"{our_positional[len(published_positional)].name} here")
            continue
        reported = len(problems)
        modes = {}
        if kind in POSITIONAL:
            index = published_positional.index(parameter)
            modes["position"] = (our_positional[index] if index < len(our_positional)
                                 else ABSORBED if var_positional else None)
        if kind is not P.POSITIONAL_ONLY:
            modes["keyword"] = (our_keywords[name] if name in our_keywords
                                else ABSORBED if var_keyword and name not in our_names else None)
        landings[name] = modes
        refused = [mode for mode, target in modes.items() if target is None]
        target = modes.get("position")
        if len(refused) == len(modes):
            problems.append(f"missing parameter {name}")
        elif kind is P.POSITIONAL_OR_KEYWORD and isinstance(target, P) and target.name != name:
            problems.append(f"position {index} is {target.name} here, {name} in the published"
                            + (f" (and {name} cannot be passed by keyword)" if refused else ""))
        elif refused:
            problems.append(f"parameter {name} can no longer be passed by {refused[0]}")
        if parameter["default"] and any(isinstance(target, P) and target.default is P.empty
                                        for target in modes.values()):
            problems.append(f"parameter {name} is optional in the published, required here")
        if len(problems) > reported:
            explained.add(name)

    receivers: dict[str, set[str]] = {}
    for name, modes in landings.items():
        for target in modes.values():
            if isinstance(target, P):
                receivers.setdefault(target.name, set()).add(name)
    for receiver, names in sorted(receivers.items()):
        if len(names) > 1 and not names & explained:
            problems.append(f"{receiver} here receives both {' and '.join(sorted(names))} of the published")
            explained |= names

    required_published = {parameter["name"] for parameter in published if not parameter["default"]}
    for parameter in ours:
        if parameter.default is not P.empty or parameter.kind in VARIADIC:
            continue
        if any(name in required_published and all(target is parameter for target in modes.values())
               for name, modes in landings.items()):
            continue  # Every published call passes it.
        if receivers.get(parameter.name, set()) & explained:
            continue  # Reported above.
        if parameter.name in landings:
            problems.append(f"required parameter {parameter.name} is left unset by some calls the published accepts")
        else:
            problems.append(f"required parameter {parameter.name}, which the published does not have")
    return problems


def real_signature(func) -> inspect.Signature:
    """What our code accepts: the signature of the function that ``functools.wraps`` chains end in, its code read
    past a ``__signature__`` that it advertises to others (``ModelWithHead.forward`` hides its ``**kwargs`` from
    transformers' Trainer)."""
    func = inspect.unwrap(func)
    if isinstance(func, types.FunctionType) and "__signature__" in vars(func):
        plain = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
        plain.__kwdefaults__ = func.__kwdefaults__
        func = plain
    return inspect.signature(func)


def _callable_problems(published_signature: list[dict], func, drop_first: tuple[bool, bool]) -> list[str]:
    """Signature problems of one of our callables; drop_first: (published, ours) lose their self/cls."""
    try:
        ours = list(real_signature(func).parameters.values())
    except (TypeError, ValueError) as error:
        return [f"no signature here ({error})"]
    published = published_signature
    if drop_first[0] and published and KINDS[published[0]["kind"]] in POSITIONAL:
        published = published[1:]
    if drop_first[1] and ours and ours[0].kind in POSITIONAL:
        ours = ours[1:]
    return signature_problems(published, ours)


# ---------------------------------------------------------------------------------------------------------------------
# The checks, one per kind of case.

def module_problems(module: str) -> list[str]:
    ours, problem = _import(module)
    if problem:
        return [problem]
    published = API["modules"][module]
    exported = published["__all__"] if published["__all__"] is not None else list(published["names"])
    our_all = getattr(ours, "__all__", None)
    our_exported = set(our_all) if our_all is not None else {name for name in vars(ours) if not name.startswith("_")}
    lost = sorted(set(exported) - our_exported)
    absent = [name for name in lost if not hasattr(ours, name)]
    unlisted = [name for name in lost if hasattr(ours, name)]
    problems = []
    if absent:
        problems.append(f"`from {module} import *` no longer binds (missing here) {', '.join(absent)}")
    if unlisted:
        problems.append(f"`from {module} import *` no longer binds (here, but not in our __all__) "
                        f"{', '.join(unlisted)}")
    return problems


def name_problems(module: str, name: str) -> list[str]:
    ours_module, problem = _import(module)
    if problem:
        return [problem]
    entry = API["modules"][module]["names"][name]
    ours = getattr(ours_module, name, MISSING)
    if ours is MISSING:
        return [f"missing {entry['kind']} {name}"]
    kind = entry["kind"]
    if kind == "import":
        source = entry["source"]
        if _is_package_module(source["module"]):
            original = _source_object(source)
            if original is not MISSING and ours is not original:
                where = source["module"] + (f".{source['name']}" if "name" in source else "")
                return [f"is not {where} (the published re-exported that object)"]
        return []
    if kind == "value":
        target = getattr(ours_module, entry.get("alias_of", ""), MISSING)
        if target is not MISSING and ours is not target and ours != target:
            return [f"is not {entry['alias_of']} (the published alias)"]
        return []
    if kind == "function":
        if not callable(ours):
            return ["not callable"]
        return _callable_problems(entry["signature"], ours, (False, False))
    if not isinstance(ours, type):
        return [f"not a class (a {type(ours).__name__})"]
    problems = []
    for written in entry["bases"]:
        keyword, _, value = written.rpartition("=")
        base = _published_expression(module, value.split("[")[0])
        if base is MISSING or not isinstance(base, type):
            continue  # Outside the package and not installed here, or not a class (a function returning one).
        if keyword == "metaclass":
            if not isinstance(ours, base):
                problems.append(f"metaclass is not {value}")
        elif keyword:
            continue
        elif base not in ours.__mro__ and not (base is ABC and isinstance(ours, ABCMeta)):
            problems.append(f"not a subclass of {written}")
    if entry["dataclass"] and not dataclasses.is_dataclass(ours):
        problems.append("not a dataclass")
    return problems


def member_problems(module: str, class_name: str, member: str) -> list[str]:
    ours_module, problem = _import(module)
    if problem:
        return [problem]
    entry = API["modules"][module]["names"][class_name]["members"][member]
    cls = getattr(ours_module, class_name, MISSING)
    if not isinstance(cls, type):
        return [f"class {class_name} is missing" if cls is MISSING else f"{class_name} is not a class"]
    kind = entry["kind"]
    try:
        raw = inspect.getattr_static(cls, member)
    except AttributeError:
        raw = MISSING
    if kind == "attribute":
        fields = {field.name for field in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        annotated = any(member in vars(base).get("__annotations__", {}) for base in cls.__mro__)
        if raw is MISSING and member not in fields and not annotated:
            return [f"missing attribute {member}"]
        return []
    if raw is MISSING:
        return [f"missing {kind} {member}"]
    our_kind = _member_kind(raw)
    if kind in ("class", "property"):
        return [f"a {our_kind} here, a {kind} in the published"] if our_kind != kind else []
    problems = []
    if our_kind != kind:
        problems.append(f"a {our_kind} here, a {kind} in the published"
                        + (f" (not a {kind})" if kind in ("classmethod", "staticmethod") else ""))
    if not entry["abstract"] and member in getattr(cls, "__abstractmethods__", ()):
        problems.append("abstract here, concrete in the published (subclasses that do not override it break)")
    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if not callable(func):
        problems.append("not callable")
    elif not isinstance(func, type):
        problems += _callable_problems(entry["signature"], func, (kind in BOUND_KINDS, our_kind in BOUND_KINDS))
    owner = next((base for base in cls.__mro__ if member in vars(base)), type(cls))  # Else found on the metaclass.
    if problems and not _is_package_module(owner.__module__):
        problems.append(f"(not defined by archit: inherited from {owner.__module__}.{owner.__qualname__})")
    return problems


def problems_of(module: str, name: str) -> list[str]:
    if name == "*":
        return module_problems(module)
    if "." in name:
        return member_problems(module, *name.split(".", 1))
    return name_problems(module, name)


# ---------------------------------------------------------------------------------------------------------------------
# Tests.

@pytest.mark.parametrize("module,name", CASES)
def test_published_api(module, name):
    key = f"{module}:{name}"
    problems = problems_of(module, name)
    if key in NOT_PROVIDED:
        if not problems:
            pytest.fail(f"{key} is in NOT_PROVIDED ({NOT_PROVIDED[key]}) but passes: remove the entry", pytrace=False)
        pytest.skip(f"not provided ({NOT_PROVIDED[key]}): {'; '.join(problems)}")
    if problems:
        pytest.fail(f"{key}: {'; '.join(problems)}", pytrace=False)


def test_not_provided_names_are_published():
    """Every allow-list entry is a case of the fixture (a typo would silently allow nothing)."""
    known = {f"{module}:{name}" for module, name in _cases()}
    assert sorted(set(NOT_PROVIDED) - known) == []


def test_fixture_is_the_published_release():
    """The fixture lists the release users depend on, and holds what its checks need."""
    assert API["distribution"] == {"name": "archit", "version": "2026.4.1"}
    names = API["modules"]["archit.instantiation.configs"]["names"]
    assert names["RecursivePretrainedConfig"]["members"]["_serialised_fields"]["kind"] == "classmethod"
    assert API["modules"]["archit.instantiation.abstracts"]["names"]["Tensor"] == {
        "kind": "import", "source": {"module": "torch", "name": "Tensor"}}


# The signature check against Python's own binding of calls: on small random signatures, signature_problems finds no
# problem exactly when every call the published signature binds also binds here, each argument landing where it should.

@st.composite
def signatures(draw) -> inspect.Signature:
    names = draw(st.lists(st.sampled_from("abc"), unique=True, max_size=3))
    kinds = sorted(draw(st.lists(st.sampled_from([P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY]),
                                 min_size=len(names), max_size=len(names))))
    parameters, defaulted = [], False
    for name, kind in zip(names, kinds):
        default = draw(st.booleans()) or (defaulted and kind in POSITIONAL)
        defaulted |= default and kind in POSITIONAL
        parameters.append(P(name, kind, default=None if default else P.empty))
    if draw(st.booleans()):
        at = next((i for i, parameter in enumerate(parameters) if parameter.kind is P.KEYWORD_ONLY), len(parameters))
        parameters.insert(at, P("args", P.VAR_POSITIONAL))
    if draw(st.booleans()):
        parameters.append(P("kwargs", P.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _published_calls(published: inspect.Signature):
    """Every shape of call the published signature binds: (args, kwargs, bound arguments)."""
    parameters = list(published.parameters.values())
    positional = [parameter for parameter in parameters if parameter.kind in POSITIONAL]
    extra_positional = any(parameter.kind is P.VAR_POSITIONAL for parameter in parameters)
    extra_keyword = ["zz"] if any(parameter.kind is P.VAR_KEYWORD for parameter in parameters) else []
    for count in range(len(positional) + 1 + 4 * extra_positional):  # *args: more than any of ours takes.
        keywords = [parameter.name for parameter in parameters if parameter.kind is P.KEYWORD_ONLY
                    or parameter.kind is P.POSITIONAL_OR_KEYWORD and positional.index(parameter) >= count]
        for size in range(len(keywords) + len(extra_keyword) + 1):
            for chosen in itertools.combinations(keywords + extra_keyword, size):
                args = tuple(f"position {i}" for i in range(count))
                kwargs = {name: f"keyword {name}" for name in chosen}
                try:
                    yield args, kwargs, published.bind(*args, **kwargs)
                except TypeError:
                    continue


def _accepts_every_published_call(published: inspect.Signature, ours: inspect.Signature) -> bool:
    our_parameters = ours.parameters
    for args, kwargs, bound in _published_calls(published):
        try:
            our_bound = ours.bind(*args, **kwargs).arguments
        except TypeError:
            return False
        landed = {value: name for name, value in our_bound.items() if our_parameters[name].kind not in VARIADIC}
        for name, value in bound.arguments.items():
            kind = published.parameters[name].kind
            if kind is P.VAR_POSITIONAL:
                if any(extra in landed for extra in value):
                    return False  # Extra positional arguments taken by a parameter of ours.
                continue
            if kind is P.VAR_KEYWORD or kind is P.POSITIONAL_ONLY:
                continue  # Extra keywords may meet a parameter of ours; a positional-only one's name is nobody's.
            if landed.get(value, name) != name:
                return False  # Taken by another of our parameters.
            if value not in landed and value.startswith("keyword") and name in our_parameters:
                return False  # In our **kwargs while we have a (positional-only) parameter of that name.
    return True


@settings(max_examples=3000 if THOROUGH else 300, deadline=None)
@given(signatures(), signatures())
def test_signature_check_agrees_with_python(published, ours):
    fixture = [{"name": parameter.name, "kind": next(k for k, v in KINDS.items() if v is parameter.kind),
                "default": parameter.default is not P.empty or parameter.kind in VARIADIC}
               for parameter in published.parameters.values()]
    problems = signature_problems(fixture, list(ours.parameters.values()))
    assert (problems == []) == _accepts_every_published_call(published, ours), (published, ours, problems)
