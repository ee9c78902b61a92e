"""
Class code for a model that was modified in place.

After ``model.roberta.embeddings.word_embeddings = CoolNewEmbeddingMatrix()`` no class declares the new field, so no
checkpoint of the modified model can be loaded. ``printDifference(model, RobertaForMaskedLM)`` prints Python source that
declares it: for every class on the path from a changed submodule up to the root, a subclass of the original class
whose ``__init__`` calls ``super().__init__(...)`` with the original signature and then reassigns only the fields that
differ. Everything else, ``forward`` included, is inherited, as in transformers' modular files.

The instance is compared with a freshly built ``klass(instance.config)`` (the reference). A field differs when
  - its module is of another class, or is a torch built-in with other settings (``extra_repr``) or another dtype;
  - it was set to ``None``, added or deleted (the owner then gets a ``forward`` stub to fill in);
  - something inside it differs (the field is rebuilt with the generated subclass, using the constructor arguments the
    original parent used, found by matching the rebuilt module against the reference).
"""
import inspect
import itertools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple, Type

import torch
from accelerate import init_empty_weights
from torch import nn

from .nodes import ABC as ABC

# The published module's node tree and the names it imported (see nodes.py).
from .nodes import SUFFIX as SUFFIX
from .nodes import Module as Module
from .nodes import ModuleListNode as ModuleListNode
from .nodes import ModuleNode as ModuleNode
from .nodes import NativeModuleNode as NativeModuleNode
from .nodes import Node as Node
from .nodes import NoneNode as NoneNode
from .nodes import OrderedDict as OrderedDict
from .nodes import abstractmethod as abstractmethod
from .nodes import alignCharacter as alignCharacter
from .nodes import constructNode as constructNode
from .nodes import getNamedSubmodules as getNamedSubmodules

__all__ = ["printDifference", "renderDifference",
           # What ``from archit.declaration.compiler import *`` also gave with the published ArchIt (no __all__).
           "SUFFIX", "Node", "NoneNode", "ModuleNode", "NativeModuleNode", "ModuleListNode", "alignCharacter",
           "getNamedSubmodules", "constructNode", "ABC", "abstractmethod", "OrderedDict", "Module", "Dict", "List", "Set",
           "Type", "warnings"]

logger = logging.getLogger(__name__)

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)
_SKIPPED_PARAMETERS = {"self", "device", "_weight", "_freeze"}
_MAX_CANDIDATES = 64  # Constructor argument combinations tried per rebuilt module.
_TODO = "TODO(archit)"


def printDifference(instance: nn.Module, klass: Type[nn.Module], *, suffix: str = "Modified",
                    reference: Optional[nn.Module] = None) -> None:
    """
    Print Python source declaring the architecture of ``instance``, a ``klass`` modified in place: subclasses of the
    original classes that differ, in dependency order, the root one named ``klass.__name__ + suffix``. Prints nothing
    (and logs that) when ``instance`` does not differ from ``klass(instance.config)``.
    """
    source = renderDifference(instance, klass, suffix=suffix, reference=reference)
    if source:
        print(source)


def renderDifference(instance: nn.Module, klass: Type[nn.Module], *, suffix: str = "Modified",
                     reference: Optional[nn.Module] = None) -> str:
    """
    The source that ``printDifference`` prints: an importable module declaring the modified architecture, or ``""``
    when there is no difference. ``reference`` is an unmodified ``klass`` instance to compare with; by default
    ``klass(instance.config)`` is built (on the meta device, so it costs no memory).
    """
    if not isinstance(instance, klass):
        raise TypeError(f"The instance is a {type(instance).__name__}, not a {klass.__name__}.")
    if reference is None:
        if not hasattr(instance, "config"):
            raise ValueError(f"{type(instance).__name__} has no .config to build a reference {klass.__name__} "
                             f"from: pass reference=klass(...) built with the original arguments.")
        with init_empty_weights():
            reference = klass(instance.config)
    if type(reference) is not klass:
        raise TypeError(f"reference must be a {klass.__name__}, got a {type(reference).__name__}.")
    compiler = _Compiler(suffix, _dominant_dtype(instance), getattr(instance, "config", None))
    root = compiler.declare(instance, reference, path="", is_root=True)
    if root is None:
        logger.warning("No difference: the %s instance has the architecture %s(config) builds; nothing to declare.",
                       type(instance).__name__, klass.__name__)
        return ""
    return compiler.render()


# ---------------------------------------------------------------------------------------------------------------------
# Comparing instance and reference into class declarations.

@dataclass
class _ClassDeclaration:
    """A subclass of ``original`` whose ``__init__`` runs the original one and then ``statements``."""
    original: type
    statements: List[str]
    forward_stub: List[str] = field(default_factory=list)  # Why the inherited forward() needs attention.
    name: str = ""

    def body(self) -> str:
        return "\n".join(self.statements) + "|" + "|".join(self.forward_stub)


class _Compiler:

    def __init__(self, suffix: str, dtype: Optional[torch.dtype], root_config: Any):
        self.suffix = suffix
        self.dtype = dtype
        self.root_config = root_config
        self.declarations: List[_ClassDeclaration] = []
        self.imports: Set[Tuple[str, str]] = set()
        self.uses_torch = False
        self.rebuilt_paths: List[str] = []  # Dotted paths of the submodules the generated code assigns.

    def declare(self, instance: nn.Module, reference: nn.Module, path: str, is_root: bool = False,
                own_arguments: Optional[Dict[str, Any]] = None) -> Optional[_ClassDeclaration]:
        """
        The declaration of ``instance``'s class if it or anything below it differs from ``reference``.

        :param own_arguments: the constructor arguments the declared class is built with; a child built with the
            same value for a parameter of the same name gets that parameter passed through (``layer_idx=layer_idx``).
        """
        declaration = _ClassDeclaration(type(reference), [])
        self._compare_children(instance, reference, "self.", path, declaration, own_arguments or {})
        if not declaration.statements:
            return None
        if is_root:
            declaration.statements.extend(self._restored_ties(instance))
        return self._register(declaration, force_name=type(reference).__name__ + self.suffix if is_root else None)

    def _compare_children(self, instance: nn.Module, reference: nn.Module, accessor: str, path: str,
                          declaration: _ClassDeclaration, own_arguments: Dict[str, Any]) -> None:
        children, reference_children = instance._modules, reference._modules
        names = _ordered_union(reference_children, children)
        if accessor != "self.":  # In a ModuleList, delete from the end so that earlier indices stay valid.
            names = [n for n in names if n in children] + [n for n in reversed(names) if n not in children]
        for name in names:
            target = _accessor(accessor, name)
            child_path = f"{path}.{name}" if path else name
            if name not in children:
                if vars(instance).get(name, ...) is None:  # Set to None before it was ever a submodule.
                    declaration.statements.append(f"{target} = None")
                    continue
                declaration.statements.append(f"del {target}")
                self._flag_forward(declaration, f"deleted submodule '{child_path}'")
                continue
            module, original = children[name], reference_children.get(name)
            if name not in reference_children:
                if module is None and vars(reference).get(name, ...) is None:
                    continue  # None in both, registered as a submodule only in the instance.
                self._flag_forward(declaration, f"added submodule '{child_path}'")
                if module is None:
                    declaration.statements.append(f"{target} = None")
                    continue
                in_list = accessor != "self." and name.isdigit()  # A new element at the end of a ModuleList.
                declaration.statements.extend(self._assignment(accessor if in_list else target, module, None,
                                                               child_path, declaration, own_arguments,
                                                               appended=in_list))
            elif module is None:
                if original is not None:
                    declaration.statements.append(f"{target} = None")
            elif original is None or type(module) is not type(original) or self._builtin_differs(module, original):
                declaration.statements.extend(self._assignment(target, module, None, child_path, declaration,
                                                               own_arguments))
            elif isinstance(module, _CONTAINERS):
                self._compare_children(module, original, target, child_path, declaration, own_arguments)
            else:
                config_available = "config" in _init_parameters(declaration.original)
                arguments, problem = _constructor_arguments(type(module), original, self.root_config, config_available)
                inner = self.declare(module, original, child_path, own_arguments=arguments)
                if inner is not None:
                    declaration.statements.extend(self._assignment(
                        target, module, original, child_path, declaration, own_arguments,
                        rebuilt=(inner, arguments, problem)))

    def _assignment(self, target: str, module: nn.Module, original: Optional[nn.Module], path: str,
                    owner: _ClassDeclaration, owner_arguments: Dict[str, Any],
                    rebuilt: Optional[Tuple[_ClassDeclaration, Dict[str, Any], Optional[str]]] = None,
                    appended: bool = False) -> List[str]:
        """Statements that put ``module`` at ``target``: the module itself rebuilt, or its generated subclass
        ``rebuilt = (declaration, constructor arguments, problem)``."""
        klass = type(module)
        self.rebuilt_paths.append(path)
        if rebuilt is None and _is_torch_builtin(klass):
            call, problem = self._builtin_call(module)
        elif rebuilt is None and "<locals>" in klass.__qualname__:
            call, problem = "", f"{klass.__qualname__} is defined inside a function and cannot be imported"
        else:
            if rebuilt is None:
                config_available = "config" in _init_parameters(owner.original)
                arguments, problem = _constructor_arguments(klass, module, self.root_config, config_available)
                name = self._class_reference(klass) if not problem or problem.startswith("unverified") else ""
            else:
                declaration, arguments, problem = rebuilt
                name = declaration.name
            passthrough = {k: v for k, v in owner_arguments.items() if k in _init_parameters(owner.original)}
            call = f"{name}({_render_arguments(arguments, _init_parameters(klass), passthrough)})"
        statement = f"{target}.append({call})" if appended else f"{target} = {call}"
        if problem is None:
            return [statement]
        if problem.startswith("unverified") and _is_torch_builtin(klass):
            warnings.warn(f"archit.declaration: {path}: {problem}; check the generated call {call}.", UserWarning,
                          stacklevel=4)
            return [f"# {_TODO}: {problem}; check these arguments.", statement]
        warnings.warn(f"archit.declaration: {path}: {problem}; the generated code has a placeholder to fill in.",
                      UserWarning, stacklevel=4)
        message = f"archit.declaration: write how to build the {klass.__name__} at '{path}' ({problem})."
        closest = [f"# Closest guess: {statement}"] if problem.startswith("unverified") else []
        return [f"# {_TODO}: build the {klass.__name__} for '{path}' here ({problem}).", *closest,
                f"raise NotImplementedError({message!r})"]

    def _restored_ties(self, instance: nn.Module) -> List[str]:
        """Parameters the instance shares between modules, where a rebuilt module would have broken the sharing."""
        first_name: Dict[int, str] = {}
        statements = []
        for name, parameter in instance.named_parameters(remove_duplicate=False):
            if id(parameter) not in first_name:
                first_name[id(parameter)] = name
                continue
            primary = first_name[id(parameter)]
            if any(_under(n, rebuilt) for n in (name, primary) for rebuilt in self.rebuilt_paths):
                statements.append(f"{_attribute_path(name)} = {_attribute_path(primary)}  # Shared in the original.")
        return statements

    def _builtin_differs(self, module: nn.Module, original: nn.Module) -> bool:
        if not _is_torch_builtin(type(module)) or isinstance(module, _CONTAINERS):
            return False
        return module.extra_repr() != original.extra_repr() or _own_dtype(module) not in (None, self.dtype)

    def _builtin_call(self, module: nn.Module) -> Tuple[str, Optional[str]]:
        klass = type(module)
        self.imports.add(("torch", "nn"))
        kwargs, problem = _arguments_from_attributes(klass, module)
        if problem is not None:
            return f"nn.{klass.__name__}(...)", problem
        if not _build_matches(klass, kwargs, module):
            problem = f"unverified: rebuilding {klass.__name__} from its attributes did not reproduce it"
        arguments = _render_arguments(kwargs, _init_parameters(klass), {})
        dtype = _own_dtype(module)
        if dtype is not None and dtype != self.dtype:
            arguments = ", ".join(filter(None, [arguments, f"dtype={dtype}"]))
            self.uses_torch = True
        return f"nn.{klass.__name__}({arguments})", problem

    def _class_reference(self, klass: Type[Any]) -> str:
        top = klass.__qualname__.split(".")[0]
        self.imports.add((klass.__module__, top))
        return klass.__qualname__

    def _flag_forward(self, declaration: _ClassDeclaration, reason: str) -> None:
        warnings.warn(f"archit.declaration: {reason}: the inherited forward() does not know about it; the generated "
                      f"class has a forward() stub for you to write.", UserWarning, stacklevel=5)
        declaration.forward_stub.append(reason)

    def _register(self, declaration: _ClassDeclaration, force_name: Optional[str]) -> _ClassDeclaration:
        for existing in self.declarations:
            if existing.original is declaration.original and existing.body() == declaration.body() and not force_name:
                return existing
        variants = sum(1 for d in self.declarations if d.original is declaration.original)
        base = declaration.original.__name__ + self.suffix
        declaration.name = force_name or (base if variants == 0 else f"{base}{variants + 1}")
        self._class_reference(declaration.original)
        self.declarations.append(declaration)
        return declaration

    # Rendering

    def render(self) -> str:
        lines = ['"""Generated by archit.declaration.compiler: the modified architecture, declared."""']
        if self.uses_torch:
            lines.append("import torch")
        for module, names in _grouped(self.imports):
            if module == "torch" and names == ["nn"]:
                lines.append("from torch import nn")
            else:
                lines.append(f"from {module} import {', '.join(names)}")
        for declaration in self.declarations:
            lines += ["", ""] + _render_class(declaration)
        return "\n".join(lines) + "\n"


def _render_class(declaration: _ClassDeclaration) -> List[str]:
    parameters, call = _signature_source(declaration.original)
    lines = [f"class {declaration.name}({declaration.original.__qualname__}):", "",
             f"    def __init__({parameters}):", f"        super().__init__({call})"]
    lines += [f"        {statement}" for statement in declaration.statements]
    if declaration.forward_stub:
        lines += ["", "    def forward(self, *args, **kwargs):",
                  f"        # {_TODO}: the inherited forward() does not use the " + "; ".join(declaration.forward_stub)
                  + ". Write the forward pass; until then this runs the original one.",
                  "        return super().forward(*args, **kwargs)"]
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# Constructor arguments.

def _init_parameters(klass: Type[Any]) -> Dict[str, inspect.Parameter]:
    try:
        signature = inspect.signature(klass.__init__)
    except (TypeError, ValueError):
        return {}
    return {name: p for name, p in signature.parameters.items()
            if name not in _SKIPPED_PARAMETERS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _signature_source(klass: Type[Any]) -> Tuple[str, str]:
    """``(parameters, call)`` reproducing ``klass.__init__``'s signature and passing everything on to it."""
    signature = inspect.signature(klass.__init__)
    parameters, call, keyword_only = ["self"], [], False
    for name, p in list(signature.parameters.items())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            parameters.append(f"*{name}")
            call.append(f"*{name}")
            keyword_only = True
        elif p.kind is p.VAR_KEYWORD:
            parameters.append(f"**{name}")
            call.append(f"**{name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not keyword_only:
                parameters.append("*")
                keyword_only = True
            if p.default is p.empty:
                parameters.append(name)
            elif _is_literal(p.default):
                parameters.append(f"{name}={p.default!r}")
            else:  # A default we cannot write down: keep the signature open instead.
                return _open_signature(signature)
            call.append(f"{name}={name}" if keyword_only or p.kind is p.KEYWORD_ONLY else name)
    return ", ".join(parameters), ", ".join(call)


def _open_signature(signature: inspect.Signature) -> Tuple[str, str]:
    names = list(signature.parameters)[1:]
    first = [names[0]] if names and names[0] == "config" else []
    return ", ".join(["self", *first, "*args", "**kwargs"]), ", ".join([*first, "*args", "**kwargs"])


def _constructor_arguments(klass: Type[Any], expected: nn.Module, root_config: Any,
                           config_available: bool) -> Tuple[Dict[str, Any], Optional[str]]:
    """Arguments of ``klass(...)`` that rebuild ``expected``: the config where the constructor takes one, values of
    same-named attributes or sizes found in ``expected``, and among those the combination whose result matches
    ``expected`` (checked by building it on the meta device)."""
    parameters = _init_parameters(klass)
    options: List[List[Tuple[str, Any]]] = []
    for name, p in parameters.items():
        if name == "config" or _annotated_as_config(p):
            if not config_available or root_config is None:
                return {}, "its constructor takes a config, and the module that holds it has none"
            options.append([(name, _CONFIG)])
            continue
        found = [v for v in _attribute_values(expected, name) if _is_literal(v)]
        if p.default is p.empty:
            found = found or _sizes(expected)
            if not found:
                return {}, f"its constructor argument '{name}' cannot be recovered from the instance"
            options.append([(name, v) for v in found])
        else:
            values = [p.default] + [v for v in found if v != p.default]
            if isinstance(p.default, bool):
                values.append(not p.default)
            options.append([(name, v) for v in dict.fromkeys(values)])
    for combination in itertools.islice(itertools.product(*options), _MAX_CANDIDATES):
        kwargs = dict(combination)
        if _build_matches(klass, {k: (root_config if v is _CONFIG else v) for k, v in kwargs.items()}, expected):
            return kwargs, None
    return dict(next(itertools.product(*options), ())), "unverified: no constructor arguments tried rebuilt it exactly"


def _sizes(module: nn.Module) -> List[int]:
    """Candidate values for a size argument: the dimensions of the module's tensors, largest first."""
    sizes = {d for t in itertools.chain(module.parameters(), module.buffers()) for d in t.shape}
    return sorted(sizes, reverse=True)[:8]


class _ConfigMarker:
    def __repr__(self) -> str:
        return "config"


_CONFIG = _ConfigMarker()


def _annotated_as_config(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    return isinstance(annotation, type) and annotation.__name__.endswith("Config")


def _render_arguments(kwargs: Dict[str, Any], parameters: Dict[str, inspect.Parameter],
                      passthrough: Dict[str, Any]) -> str:
    """Source of a call's arguments: required ones positionally, others by keyword when not the default; a value
    equal to the enclosing ``__init__``'s same-named parameter is passed as that parameter."""
    rendered, positional = [], True
    for name, value in kwargs.items():
        p = parameters[name]
        if value is _CONFIG:
            source = "config"
        elif name in passthrough and passthrough[name] == value and value is not None:
            source = name
        elif p.default is not p.empty and value == p.default:
            positional = False
            continue
        else:
            source = _literal(value)
        if positional and p.default is p.empty and p.kind is not p.KEYWORD_ONLY:
            rendered.append(source)
        else:
            positional = False
            rendered.append(f"{name}={source}")
    return ", ".join(rendered)


def _arguments_from_attributes(klass: Type[Any], module: nn.Module) -> Tuple[Dict[str, Any], Optional[str]]:
    """Constructor arguments of a torch built-in, read from its attributes (``in_features``, ``eps``, ``bias``, ...)."""
    kwargs: Dict[str, Any] = {}
    for name, p in _init_parameters(klass).items():
        if name == "dtype":
            continue
        if name == "bias" and isinstance(getattr(module, "bias", None), (torch.Tensor, type(None))):
            kwargs[name] = getattr(module, "bias", None) is not None
        elif name in vars(module) and _is_literal(vars(module)[name]):
            kwargs[name] = vars(module)[name]
        elif p.default is p.empty:
            return {}, f"its argument '{name}' is not an attribute of the instance"
    return kwargs, None


def _build_matches(klass: Type[Any], kwargs: Dict[str, Any], expected: nn.Module) -> bool:
    """Whether ``klass(**kwargs)``, built on the meta device, has ``expected``'s structure."""
    try:
        with init_empty_weights(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = klass(**kwargs)
    except Exception:
        return False
    return _structure(candidate) == _structure(expected)


def _structure(module: nn.Module) -> List[Tuple]:
    """What a rebuilt module must share with the original: its tree, tensor shapes and plain settings."""
    result = []
    for name, sub in module.named_modules():
        settings = tuple(sorted((k, v) for k, v in vars(sub).items()
                                if not k.startswith("_") and k != "training" and _is_literal(v)))
        tensors = tuple((n, tuple(t.shape)) for n, t in itertools.chain(sub.named_parameters(recurse=False),
                                                                        sub.named_buffers(recurse=False)))
        result.append((name, type(sub).__qualname__, tensors, settings, sub.extra_repr()))
    return result


def _attribute_values(module: nn.Module, name: str) -> List[Any]:
    """Values of attributes called ``name`` on ``module`` and below, nearest first."""
    values = []
    for sub in module.modules():
        if name in vars(sub) and vars(sub)[name] not in values:
            values.append(vars(sub)[name])
    return values


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers.

def _is_torch_builtin(klass: Type[Any]) -> bool:
    return klass.__module__.startswith("torch.nn") and getattr(nn, klass.__name__, None) is klass


def _own_dtype(module: nn.Module) -> Optional[torch.dtype]:
    return next((p.dtype for p in module.parameters(recurse=False) if p.is_floating_point()), None)


def _dominant_dtype(module: nn.Module) -> Optional[torch.dtype]:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _is_literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return False


def _literal(value: Any) -> str:
    return repr(value)


def _under(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def _attribute_path(dotted: str) -> str:
    """``"encoder.layer.1.weight"`` -> ``"self.encoder.layer[1].weight"``."""
    source = "self"
    for part in dotted.split("."):
        source += f"[{part}]" if part.isdigit() else f".{part}"
    return source


def _accessor(prefix: str, name: str) -> str:
    if prefix == "self.":
        return f"self.{name}"
    return f"{prefix}[{int(name)}]" if name.isdigit() else f"{prefix}[{name!r}]"


def _ordered_union(first: Dict[str, Any], second: Dict[str, Any]) -> List[str]:
    return list(dict.fromkeys(itertools.chain(first, second)))


def _grouped(imports: Set[Tuple[str, str]]) -> List[Tuple[str, List[str]]]:
    modules: Dict[str, List[str]] = {}
    for module, name in sorted(imports):
        modules.setdefault(module, []).append(name)
    return sorted(modules.items(), key=lambda item: (not item[0].startswith("torch"), item[0]))
