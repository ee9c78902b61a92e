"""archit.declaration.compiler: the class code printed for a model modified in place runs as printed, builds the same
module tree as the modified instance, loads its state dict strictly and computes the same outputs.

Every test modifies a tiny transformers model in place, renders the difference, writes the source to a module file in
tmp_path and imports it (as a user would after committing it), then builds the root class from the config alone.
Custom modules are defined at module level so that the generated code can import them (``from tests.test_declaration
import ...``).
"""
import importlib.util
import inspect
import logging
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import pytest
import torch
import transformers
from torch import nn

from archit.declaration.compiler import printDifference, renderDifference

from tests.helpers import (
    HIDDEN,
    SEQ_LEN,
    VOCAB,
    assert_same_outputs,
    bert_config,
    build_transformers_model,
    gpt2_config,
    make_inputs,
    perturb_,
    roberta_config,
)

TODO = "TODO(archit)"


# ---------------------------------------------------------------------------------------------------------------------
# Custom modules that replace parts of the models. Module level, so that the generated code can import them.

class CoolNewEmbeddingMatrix(torch.nn.Module):
    """The published README's example, verbatim."""
    def forward(self, input_ids):
        pass


class ConfigEmbedding(nn.Module):
    """An embedding matrix whose constructor takes the config."""
    def __init__(self, config):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(config.vocab_size, config.hidden_size))

    def forward(self, input_ids):
        return nn.functional.embedding(input_ids, self.weight) * 0.5


class FixedEmbedding(nn.Module):
    """An embedding matrix whose constructor takes no arguments."""
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(VOCAB, HIDDEN))

    def forward(self, input_ids):
        return self.weight[input_ids] + 1.0


class ScaledEmbedding(nn.Module):
    """Constructor arguments that the instance keeps under the same names (so they can be recovered)."""
    def __init__(self, num_embeddings, embedding_dim, scale=1.0):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.scale = num_embeddings, embedding_dim, scale
        self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))

    def forward(self, input_ids):
        return nn.functional.embedding(input_ids, self.weight) * self.scale


class TableEmbedding(nn.Module):
    """Built from a tensor: nothing on the instance says how to build it again."""
    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(table.clone())

    def forward(self, input_ids):
        return nn.functional.embedding(input_ids, self.weight)


def local_embedding() -> nn.Module:
    """An instance of a class defined inside a function: it cannot be imported by the generated code."""
    class LocalEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(VOCAB, HIDDEN))

        def forward(self, input_ids):
            return self.weight[input_ids]
    return LocalEmbedding()


# ---------------------------------------------------------------------------------------------------------------------
# The three families and where their parts are.

@dataclass(frozen=True)
class Family:
    name: str
    make_config: Callable[..., transformers.PretrainedConfig]
    klass: type                   # the model with an LM head that the tests modify
    core: str                     # attribute holding the base model
    word_embeddings: str
    layers: str                   # the ModuleList of blocks
    block_dropout: str            # a Dropout inside a block (relative to the block)
    activation: str               # the activation module inside a block (relative to the block)
    block_linear: str             # a projection inside a block (relative to the block) ...
    block_linear_shape: Tuple[int, int]  # ... and the (in, out) of an nn.Linear that can replace it
    layer_norm: str
    embedding_dropout: str        # applied to the (batch, sequence, hidden) embeddings
    head_linear: str              # a Linear in the LM head

    def block(self, index: int, part: str) -> str:
        return f"{self.layers}.{index}.{part}"


FAMILIES: Dict[str, Family] = {
    "roberta": Family("roberta", roberta_config, transformers.RobertaForMaskedLM, "roberta",
                      "roberta.embeddings.word_embeddings", "roberta.encoder.layer", "output.dropout",
                      "intermediate.intermediate_act_fn", "attention.self.query", (HIDDEN, HIDDEN),
                      "roberta.embeddings.LayerNorm", "roberta.embeddings.dropout", "lm_head.dense"),
    "bert": Family("bert", bert_config, transformers.BertForMaskedLM, "bert",
                   "bert.embeddings.word_embeddings", "bert.encoder.layer", "output.dropout",
                   "intermediate.intermediate_act_fn", "attention.self.query", (HIDDEN, HIDDEN),
                   "bert.embeddings.LayerNorm", "bert.embeddings.dropout", "cls.predictions.transform.dense"),
    "gpt2": Family("gpt2", gpt2_config, transformers.GPT2LMHeadModel, "transformer",
                   "transformer.wte", "transformer.h", "attn.resid_dropout",
                   "mlp.act", "attn.c_proj", (HIDDEN, HIDDEN),
                   "transformer.ln_f", "transformer.drop", "lm_head"),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> Family:
    return FAMILIES[request.param]


# ---------------------------------------------------------------------------------------------------------------------
# Helpers: modify, render, import, build, compare.

def replace(model: nn.Module, path: str, module) -> None:
    """``model.<path> = module`` for a dotted path (``encoder.layer.1.output.dropout``)."""
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def original_model(family: Family) -> nn.Module:
    return build_transformers_model(family.klass, family.make_config())


def finish(model: nn.Module) -> nn.Module:
    """New noise on every parameter after the modification (so that nothing keeps its initial value), eval mode."""
    return perturb_(model, seed=1).eval()


@pytest.fixture
def import_source(tmp_path, monkeypatch):
    """Write generated source to ``tmp_path/generated_<test>.py`` and import it as a module."""
    def load(source: str):
        name = "generated_" + re.sub(r"\W", "_", tmp_path.name)
        path = tmp_path / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module
    return load


def defined_classes(source: str) -> List[str]:
    return re.findall(r"^class (\w+)\(", source, flags=re.M)


def settings(module: nn.Module) -> dict:
    """A module's plain attributes (ints, floats, strings, None, ...), what its constructor arguments decided, and its
    children set to None (``self.pooler = None`` registers None as a child or a plain attribute: the same to forward)."""
    plain = {k: v for k, v in vars(module).items()
             if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, type(None)))}
    return {**plain, **{name: None for name, child in module._modules.items() if child is None}}


def assert_same_tree(root: nn.Module, instance: nn.Module, generated_module: str) -> None:
    """Same paths; each module of the instance's class or a generated subclass of it; same settings and extra_repr;
    same tensor dtypes."""
    root_modules, instance_modules = dict(root.named_modules()), dict(instance.named_modules())
    assert root_modules.keys() == instance_modules.keys()
    for path, expected in instance_modules.items():
        built = root_modules[path]
        if type(built) is not type(expected):
            assert type(built).__module__ == generated_module and type(built).__bases__ == (type(expected),), \
                f"{path or '<root>'}: a {type(built).__qualname__} where the instance has a {type(expected).__qualname__}"
        assert settings(built) == settings(expected), path
        assert built.extra_repr() == expected.extra_repr(), path
    assert {k: v.dtype for k, v in root.state_dict().items()} == {k: v.dtype for k, v in instance.state_dict().items()}


def build_root(module, root_name: str, instance: nn.Module, config, **init_kwargs) -> nn.Module:
    """``Root(config)`` from the generated module, the instance's state dict loaded strictly, checked against the
    instance's module tree."""
    torch.manual_seed(1234)
    root = getattr(module, root_name)(config, **init_kwargs).eval()
    incompatible = root.load_state_dict(instance.state_dict(), strict=True)
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    assert_same_tree(root, instance, module.__name__)
    return root


def outputs(model: nn.Module) -> torch.Tensor:
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask)[0]


def assert_bitwise_same_outputs(root: nn.Module, instance: nn.Module) -> None:
    """The generated code computes exactly what the instance computes: the same modules on the same weights, copied in
    by ``load_state_dict`` (into memory of their own), so the same bits. A model reloaded from a checkpoint is compared
    with ``assert_same_outputs`` instead (see there why)."""
    torch.testing.assert_close(outputs(root), outputs(instance), atol=0, rtol=0)


def assert_defined_before_use(source: str) -> None:
    """Dependency order: each generated class is defined before any other generated class builds it, and every one
    but the root is built somewhere."""
    classes = defined_classes(source)
    for name in classes:
        definition = source.index(f"class {name}(")
        uses = [match.start() for match in re.finditer(rf"(?<!class )\b{name}\(", source)]
        assert all(use > definition for use in uses), name
        assert uses or name == classes[-1], f"{name} is defined but never built"


def shared_parameters(model: nn.Module) -> List[List[str]]:
    """Groups of parameter names that are one tensor (tied weights)."""
    groups = defaultdict(list)
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups[id(parameter)].append(name)
    return sorted(sorted(names) for names in groups.values() if len(names) > 1)


def declare_and_check(instance: nn.Module, family: Family, import_source, **render_kwargs) -> Tuple[str, nn.Module]:
    """Render, import, build the root, load strictly, compare the tree and the outputs; (source, root)."""
    source = renderDifference(instance, family.klass, **render_kwargs)
    module = import_source(source)
    root = build_root(module, family.klass.__name__ + render_kwargs.get("suffix", "Modified"), instance,
                      family.make_config())
    assert_bitwise_same_outputs(root, instance)
    return source, root


# ---------------------------------------------------------------------------------------------------------------------
# The published README's example and API.

def test_published_signature_new_options_are_keywords():
    for function in (printDifference, renderDifference):
        parameters = list(inspect.signature(function).parameters.values())
        assert [p.name for p in parameters[:2]] == ["instance", "klass"]
        assert all(p.kind is p.KEYWORD_ONLY for p in parameters[2:]), function.__name__


def test_readme_example_prints_three_classes_that_run(capsys, import_source):
    model_with_head = build_transformers_model(transformers.RobertaForMaskedLM, roberta_config())
    model_with_head.roberta.embeddings.word_embeddings = CoolNewEmbeddingMatrix()
    assert printDifference(model_with_head, transformers.RobertaForMaskedLM) is None
    printed = capsys.readouterr().out

    assert printed.strip() == renderDifference(model_with_head, transformers.RobertaForMaskedLM).strip()
    assert sorted(defined_classes(printed)) == ["RobertaEmbeddingsModified", "RobertaForMaskedLMModified",
                                                "RobertaModelModified"]
    assert f"from {CoolNewEmbeddingMatrix.__module__} import CoolNewEmbeddingMatrix" in printed
    assert "self.word_embeddings = CoolNewEmbeddingMatrix()" in printed
    assert TODO not in printed
    # Its forward returns None, so the model cannot run: the tree and the strict load are what can be compared.
    root = build_root(import_source(printed), "RobertaForMaskedLMModified", model_with_head, roberta_config())
    assert isinstance(root, transformers.PreTrainedModel)
    assert type(root.roberta.embeddings.word_embeddings) is CoolNewEmbeddingMatrix


# ---------------------------------------------------------------------------------------------------------------------
# A submodule replaced by a custom class.

@pytest.mark.parametrize("make_module, call", [
    (lambda: ConfigEmbedding(roberta_config()), "ConfigEmbedding(config)"),
    (FixedEmbedding, "FixedEmbedding()"),
    (lambda: ScaledEmbedding(VOCAB, HIDDEN, scale=2.0), "ScaledEmbedding("),
], ids=["config-constructor", "no-arguments", "keyword-arguments-from-attributes"])
def test_custom_class_replaces_word_embeddings(family, make_module, call, import_source):
    instance = original_model(family)
    replace(instance, family.word_embeddings, make_module())
    finish(instance)
    source, root = declare_and_check(instance, family, import_source)
    assert call in source
    assert TODO not in source
    assert type(root.get_submodule(family.word_embeddings)) is type(instance.get_submodule(family.word_embeddings))


@pytest.mark.parametrize("make_module", [lambda: TableEmbedding(torch.randn(VOCAB, HIDDEN)), local_embedding],
                         ids=["argument-not-recoverable", "class-not-importable"])
def test_custom_class_that_cannot_be_rebuilt_gets_a_placeholder_that_fails_loudly(family, make_module, import_source):
    instance = original_model(family)
    replace(instance, family.word_embeddings, make_module())
    with pytest.warns(UserWarning, match="the generated code has a placeholder to fill in"):
        source = renderDifference(finish(instance), family.klass)
    assert TODO in source
    assert "raise NotImplementedError" in source
    module = import_source(source)  # The placeholder is valid Python: the file imports ...
    with pytest.raises(NotImplementedError):  # ... and building the architecture says what is missing.
        getattr(module, family.klass.__name__ + "Modified")(family.make_config())


# ---------------------------------------------------------------------------------------------------------------------
# Torch built-ins replaced: rebuilt from their attributes.

# case -> (family, unmodified model) -> (path, the built-in that replaces what is there)
BUILTINS = {
    "linear-without-bias": lambda f, m: (f.block(0, f.block_linear), nn.Linear(*f.block_linear_shape, bias=False)),
    "layernorm-eps": lambda f, m: (f.layer_norm, nn.LayerNorm(HIDDEN, eps=1e-3)),
    # Same eps, no bias: extra_repr() does not show the difference, the state dict does.
    "layernorm-without-bias": lambda f, m: (f.layer_norm, nn.LayerNorm(HIDDEN, eps=m.get_submodule(f.layer_norm).eps,
                                                                       bias=False)),
    "dropout-p": lambda f, m: (f.block(0, f.block_dropout), nn.Dropout(p=0.3)),
    "activation": lambda f, m: (f.block(0, f.activation), nn.ReLU()),
    "activation-with-argument": lambda f, m: (f.block(0, f.activation), nn.GELU(approximate="tanh")),
    "embedding-padding-idx": lambda f, m: (f.word_embeddings, nn.Embedding(VOCAB, HIDDEN, padding_idx=5)),
    # Applied to (batch, sequence, hidden): sequence positions are the channels, hidden the length (kept by dilation).
    "conv1d": lambda f, m: (f.embedding_dropout, nn.Conv1d(SEQ_LEN, SEQ_LEN, kernel_size=3, padding=2, dilation=2,
                                                           bias=False, padding_mode="replicate")),
}


@pytest.mark.parametrize("case", sorted(BUILTINS))
def test_torch_builtin_replaced(family, case, import_source):
    instance = original_model(family)
    path, module = BUILTINS[case](family, instance)
    replace(instance, path, module)
    source, root = declare_and_check(finish(instance), family, import_source)
    assert "from torch import nn" in source
    assert f"nn.{type(module).__name__}(" in source
    assert TODO not in source
    rebuilt = root.get_submodule(path)
    assert type(rebuilt) is type(module) and rebuilt.extra_repr() == module.extra_repr()


def test_torch_builtin_with_another_dtype(family, import_source):
    """A float64 Linear in a float32 model: the model cannot run, the Linear can (and is rebuilt as float64)."""
    instance = original_model(family)
    path = family.block(0, family.block_linear)
    replace(instance, path, nn.Linear(*family.block_linear_shape, dtype=torch.float64))
    source = renderDifference(finish(instance), family.klass)
    assert "import torch\n" in source and "dtype=torch.float64" in source
    root = build_root(import_source(source), family.klass.__name__ + "Modified", instance, family.make_config())
    float64 = {key for key, tensor in root.state_dict().items() if tensor.dtype == torch.float64}
    assert float64 == {f"{path}.weight", f"{path}.bias"}  # That Linear only.
    x = torch.randn(3, family.block_linear_shape[0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(root.get_submodule(path)(x), instance.get_submodule(path)(x), atol=0, rtol=0)



# ---------------------------------------------------------------------------------------------------------------------
# ModuleList elements, None, added and deleted submodules.

def test_one_element_of_a_module_list(family, import_source):
    instance = original_model(family)
    replace(instance, family.block(1, family.block_dropout), nn.Dropout(0.3))
    source, root = declare_and_check(finish(instance), family, import_source)
    list_name = family.layers.rpartition(".")[2]
    assert f"self.{list_name}[1] = " in source
    assert f"self.{list_name}[0]" not in source
    layers, original_layers = root.get_submodule(family.layers), instance.get_submodule(family.layers)
    assert type(layers[0]) is type(original_layers[0])
    assert type(layers[1]).__name__ == type(original_layers[1]).__name__ + "Modified"
    assert root.get_submodule(family.block(1, family.block_dropout)).p == 0.3


def test_identical_changes_share_one_class(family, import_source):
    instance = original_model(family)
    for index in (0, 1):
        replace(instance, family.block(index, family.block_dropout), nn.Dropout(0.3))
    source, root = declare_and_check(finish(instance), family, import_source)
    block_class = type(instance.get_submodule(family.layers)[0]).__name__
    assert defined_classes(source).count(block_class + "Modified") == 1
    assert block_class + "Modified2" not in source
    layers = root.get_submodule(family.layers)
    assert type(layers[0]) is type(layers[1])


@pytest.mark.parametrize("klass, make_config", [(transformers.BertModel, bert_config),
                                                (transformers.RobertaModel, roberta_config)], ids=["bert", "roberta"])
def test_submodule_set_to_none(klass, make_config, import_source):
    instance = build_transformers_model(klass, make_config())
    instance.pooler = None
    source = renderDifference(instance, klass)
    assert "self.pooler = None" in source
    assert defined_classes(source) == [klass.__name__ + "Modified"]
    root = build_root(import_source(source), klass.__name__ + "Modified", instance, make_config())
    assert root.pooler is None
    assert_bitwise_same_outputs(root, instance)


def test_submodule_added(family, import_source):
    instance = original_model(family)
    getattr(instance, family.core).extra = nn.Linear(4, 4)
    finish(instance)
    with pytest.warns(UserWarning, match=re.escape(f"{family.core}.extra")):
        source, root = declare_and_check(instance, family, import_source)
    assert "self.extra = nn.Linear(4, 4)" in source
    assert "def forward(self, *args, **kwargs):" in source and TODO in source
    core_class = type(getattr(root, family.core))
    assert "forward" in vars(core_class)  # The stub sits on the class that owns the new field ...
    assert "forward" not in vars(type(root))  # ... and nowhere else.


def test_last_block_deleted(family, import_source):
    instance = original_model(family)
    del instance.get_submodule(family.layers)[1]
    finish(instance)
    with pytest.warns(UserWarning, match=re.escape(f"{family.layers}.1")):
        source, root = declare_and_check(instance, family, import_source)
    list_name = family.layers.rpartition(".")[2]
    assert f"del self.{list_name}[1]" in source
    assert "def forward(self, *args, **kwargs):" in source and TODO in source
    assert len(root.get_submodule(family.layers)) == 1


def test_submodule_deleted(import_source):
    """BertModel without its pooler: the inherited forward needs it, in the root exactly as in the instance."""
    instance = build_transformers_model(transformers.BertModel, bert_config())
    del instance.pooler
    with pytest.warns(UserWarning, match="pooler"):
        source = renderDifference(instance, transformers.BertModel)
    assert "del self.pooler" in source
    assert "def forward(self, *args, **kwargs):" in source and TODO in source
    root = build_root(import_source(source), "BertModelModified", instance, bert_config())
    assert "pooler" not in root._modules
    for model in (instance, root):
        with pytest.raises(AttributeError, match="pooler"):
            outputs(model)


# ---------------------------------------------------------------------------------------------------------------------
# Several changes, names, unchanged models, round trips.

SEVERAL_DEPTHS_CLASSES = {
    "roberta": ["RobertaEmbeddings", "RobertaOutput", "RobertaOutput2", "RobertaLayer", "RobertaLayer2",
                "RobertaEncoder", "RobertaModel", "RobertaLMHead", "RobertaForMaskedLM"],
    "bert": ["BertEmbeddings", "BertOutput", "BertOutput2", "BertLayer", "BertLayer2", "BertEncoder", "BertModel",
             "BertPredictionHeadTransform", "BertLMPredictionHead", "BertOnlyMLMHead", "BertForMaskedLM"],
    "gpt2": ["GPT2Attention", "GPT2Attention2", "GPT2Block", "GPT2Block2", "GPT2Model", "GPT2LMHeadModel"],
}


def test_changes_at_several_depths(family, import_source):
    instance = original_model(family)
    replace(instance, family.word_embeddings, ConfigEmbedding(family.make_config()))
    replace(instance, family.block(0, family.block_dropout), nn.Dropout(0.2))
    replace(instance, family.block(1, family.block_dropout), nn.Dropout(0.3))  # Another variant of the same classes.
    replace(instance, family.head_linear, nn.Linear(HIDDEN, instance.get_submodule(family.head_linear).out_features,
                                                    bias=family.name == "gpt2"))
    source, root = declare_and_check(finish(instance), family, import_source)

    expected = [re.sub(r"(\d?)$", r"Modified\1", name, count=1) for name in SEVERAL_DEPTHS_CLASSES[family.name]]
    assert sorted(defined_classes(source)) == sorted(expected)
    assert_defined_before_use(source)
    layers = root.get_submodule(family.layers)
    assert type(layers[0]) is not type(layers[1])
    assert [layer.get_submodule(family.block_dropout).p for layer in layers] == [0.2, 0.3]


def test_suffix_names_the_generated_classes(import_source):
    family = FAMILIES["roberta"]
    instance = original_model(family)
    replace(instance, family.word_embeddings, FixedEmbedding())
    source, root = declare_and_check(finish(instance), family, import_source, suffix="WithCool")
    assert type(root).__name__ == "RobertaForMaskedLMWithCool"
    assert "Modified" not in source
    assert all(name.endswith("WithCool") for name in defined_classes(source))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_unchanged_model_prints_nothing_and_says_so(family, dtype, capsys, caplog):
    instance = original_model(family).to(dtype)  # Other weights and another dtype are not another architecture.
    with caplog.at_level(logging.WARNING, logger="archit.declaration.compiler"):
        assert renderDifference(instance, family.klass) == ""
        printDifference(instance, family.klass)
    assert capsys.readouterr().out == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "archit.declaration.compiler"]
    assert len(messages) == 2 and all(re.search(r"no difference", m, flags=re.I) for m in messages)


def test_reference_instead_of_klass_from_config(import_source):
    """A RobertaModel built with add_pooling_layer=False differs from RobertaModel(config), which has a pooler (and its
    declaration runs), but not from the reference it was built like."""
    torch.manual_seed(0)
    instance = perturb_(transformers.RobertaModel(roberta_config(), add_pooling_layer=False)).eval()
    source = renderDifference(instance, transformers.RobertaModel)
    assert "self.pooler = None" in source
    root = build_root(import_source(source), "RobertaModelModified", instance, roberta_config())
    assert root.pooler is None
    assert_bitwise_same_outputs(root, instance)

    reference = transformers.RobertaModel(roberta_config(), add_pooling_layer=False)
    assert renderDifference(instance, transformers.RobertaModel, reference=reference) == ""
    instance.encoder.layer[0].output.dropout = nn.Dropout(0.3)
    source = renderDifference(instance, transformers.RobertaModel, reference=reference)
    assert "pooler" not in source
    assert "self.layer[0] = RobertaLayerModified(" in source


def test_tied_weights_stay_tied(family, import_source):
    """A change inside the base model leaves the LM head tied to the input embeddings: Root(config) ties them too."""
    instance = original_model(family)
    replace(instance, family.layer_norm, nn.LayerNorm(HIDDEN, eps=1e-3))
    assert shared_parameters(instance), "the tiny model should tie its LM head"
    _, root = declare_and_check(finish(instance), family, import_source)
    assert shared_parameters(root) == shared_parameters(instance)


def keys_transformers_loses(family: Family, directory) -> List[str]:
    """Keys that transformers itself does not restore through save_pretrained -> from_pretrained of the unmodified
    model (4.49's RobertaForMaskedLM.from_pretrained loads lm_head.bias as zeros): not the generated code's to fix."""
    model = original_model(family)
    model.save_pretrained(str(directory))
    reloaded = family.klass.from_pretrained(str(directory), attn_implementation="eager")
    return [key for key, tensor in reloaded.state_dict().items() if not torch.equal(tensor, model.state_dict()[key])]


def test_pretrained_model_round_trip(family, tmp_path, import_source):
    instance = original_model(family)
    replace(instance, family.block(0, family.block_linear), nn.Linear(*family.block_linear_shape, bias=False))
    replace(instance, family.layer_norm, nn.LayerNorm(HIDDEN, eps=1e-3))
    source, root = declare_and_check(finish(instance), family, import_source)
    Root = type(root)
    assert issubclass(Root, transformers.PreTrainedModel) and issubclass(Root, family.klass)

    root.save_pretrained(str(tmp_path / "checkpoint"))
    reloaded, info = Root.from_pretrained(str(tmp_path / "checkpoint"), output_loading_info=True,
                                          attn_implementation="eager")
    assert type(reloaded) is Root
    assert not info["missing_keys"] and not info["unexpected_keys"]
    reloaded.eval()
    expected = instance.state_dict()
    assert reloaded.state_dict().keys() == expected.keys()
    lost = keys_transformers_loses(family, tmp_path / "unmodified")
    for key, tensor in reloaded.state_dict().items():
        assert key in lost or torch.equal(tensor, expected[key]), key
    with torch.no_grad():
        for key in lost:
            reloaded.get_parameter(key).copy_(expected[key])
    assert_same_outputs(outputs(reloaded), outputs(instance))


def test_published_top_level_name():
    """The published package and its tests import ``printDifference`` from the package root."""
    # Imported here on purpose: the import from the package root is what is tested, and at module level it would
    # shadow the compiler's printDifference and renderDifference that the other tests use.
    from archit import printDifference, renderDifference
    from archit.declaration.compiler import printDifference as in_module
    from archit.declaration.compiler import renderDifference as render_in_module

    assert printDifference is in_module and renderDifference is render_in_module
