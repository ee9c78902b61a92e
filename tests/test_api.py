"""The published names import from their published module paths; base models, configs and util functions behave as
computed independently here."""
import enum
import importlib
from dataclasses import dataclass, field

import pytest
import torch
import transformers
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention

from archit.instantiation import abstracts, configs, heads, tasks
from archit.instantiation.abstracts import AllHiddenStatesAndPooling, BaseModel, BaseModelConfig
from archit.instantiation.basemodels import RobertaBaseModel
from archit.instantiation.configs import CombinedConfig
from archit.instantiation.heads import CausalLMHeadConfig, MaskedLMHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.tasks import ForSingleLabelTokenClassification
from archit.loading.files import CheckpointReader, find_weight_files
from archit.util import checkpointToStateDict, dataclass_from_dict, parameterCount, parameterCountBaseVsHead

from tests.helpers import (
    HIDDEN,
    assert_close,
    build_transformers_model,
    make_inputs,
    read_checkpoint_tensors,
    roberta_config,
)

PUBLISHED_NAMES = {
    "archit.instantiation.abstracts": ["BaseModel", "Head", "ModelWithHead", "ModelWithHeadOutput", "CombinedConfig",
                                       "BaseModelConfig", "HeadConfig", "AllHiddenStatesAndPooling", "Tensors",
                                       "OneOrMoreTensors", "HeadOutput", "PC", "HC"],
    "archit.instantiation.configs": ["BaseModelConfig", "HeadConfig", "CombinedConfig", "PC", "HC"],
    "archit.instantiation.basemodels": ["RobertaBaseModel", "BertBaseModel", "GPT2BaseModel"],
    "archit.instantiation.heads": ["TokenClassificationHead", "TokenClassificationHeadConfig",
                                   "SequenceClassificationHead", "SequenceClassificationHeadConfig",
                                   "MaskedLMHead", "MaskedLMHeadConfig", "CausalLMHead", "CausalLMHeadConfig",
                                   "ExtractiveQAHead", "ExtractiveQAHeadConfig"],
    "archit.instantiation.tasks": ["ForSingleLabelTokenClassification", "ForSingleLabelSequenceClassification",
                                   "ForMultiLabelSequenceClassification", "ForSequenceRegression", "ForMaskedLM",
                                   "ForCausalLM", "ForExtractiveQA"],
    "archit.util": ["dataclass_from_dict", "parameterCount", "parameterCountBaseVsHead", "checkpointToStateDict"],
}


@pytest.mark.parametrize("module_name,name", [(m, n) for m, names in PUBLISHED_NAMES.items() for n in names])
def test_published_name_imports(module_name, name):
    module = importlib.import_module(module_name)
    assert hasattr(module, name), f"{module_name} has no {name}"


def test_config_names_are_the_same_objects_in_abstracts_and_configs():
    for name in PUBLISHED_NAMES["archit.instantiation.configs"]:
        assert getattr(abstracts, name) is getattr(configs, name)


def test_all_hidden_states_and_pooling_is_the_transformers_output_class():
    assert AllHiddenStatesAndPooling is BaseModelOutputWithPoolingAndNoAttention


def test_tasks_name_their_head_classes():
    expected = {
        "ForSingleLabelTokenClassification": heads.TokenClassificationHead,
        "ForSingleLabelSequenceClassification": heads.SequenceClassificationHead,
        "ForMultiLabelSequenceClassification": heads.SequenceClassificationHead,
        "ForSequenceRegression": heads.SequenceClassificationHead,
        "ForMaskedLM": heads.MaskedLMHead,
        "ForCausalLM": heads.CausalLMHead,
        "ForExtractiveQA": heads.ExtractiveQAHead,
    }
    for task_name, head_cls in expected.items():
        assert getattr(tasks, task_name).headClass() is head_cls, task_name


def test_tasks_build_their_losses():
    expected = {
        "ForSingleLabelTokenClassification": torch.nn.CrossEntropyLoss,
        "ForSingleLabelSequenceClassification": torch.nn.CrossEntropyLoss,
        "ForMultiLabelSequenceClassification": torch.nn.BCEWithLogitsLoss,
        "ForSequenceRegression": torch.nn.MSELoss,
        "ForMaskedLM": torch.nn.CrossEntropyLoss,
        "ForCausalLM": torch.nn.CrossEntropyLoss,
        "ForExtractiveQA": torch.nn.CrossEntropyLoss,
    }
    for task_name, loss_cls in expected.items():
        assert isinstance(getattr(tasks, task_name).buildLoss(), loss_cls), task_name


def test_lm_head_configs_tie_by_default():
    assert MaskedLMHeadConfig().tie_weights is True
    assert CausalLMHeadConfig().tie_weights is True


# ---------------------------------------------------------------------------------------------------------------------
# Base models.

CORE_CLASSES = {"roberta": (transformers.RobertaConfig, transformers.RobertaModel),
                "bert": (transformers.BertConfig, transformers.BertModel),
                "gpt2": (transformers.GPT2Config, transformers.GPT2Model)}


def test_base_model_classes_name_config_and_core(arch):
    config_cls, core_cls = CORE_CLASSES[arch.name]
    assert issubclass(arch.base_class, BaseModel)
    assert issubclass(BaseModel, transformers.PreTrainedModel)
    assert arch.base_class.configClass() is config_cls
    assert arch.base_class.coreClass() is core_cls


def test_standardise_config(arch):
    config = arch.make_config()
    standard = arch.base_class.standardiseConfig(config)
    assert isinstance(standard, BaseModelConfig)
    assert standard.hidden_size == config.hidden_size
    assert standard.vocab_size == config.vocab_size
    assert standard.num_hidden_layers == config.num_hidden_layers
    assert standard.num_attention_heads == config.num_attention_heads
    assert standard.context_length == config.max_position_embeddings
    dropout = config.resid_pdrop if arch.name == "gpt2" else config.hidden_dropout_prob
    assert standard.hidden_dropout_prob == dropout


def test_build_core_has_no_pooler(arch):
    config = arch.make_config()
    core = arch.base_class.buildCore(config)
    assert type(core) is arch.core
    if arch.name != "gpt2":
        assert core.pooler is None
        assert not any(k.startswith("pooler.") for k in core.state_dict())


def test_base_model_forward_equals_transformers_core(arch):
    config = arch.make_config()
    torch.manual_seed(0)
    base = arch.base_class(config).eval()
    assert type(base.base_model) is arch.core
    reference = arch.core(arch.make_config(), **({} if arch.name == "gpt2" else {"add_pooling_layer": False})).eval()
    reference.load_state_dict(base.base_model.state_dict())
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = base(input_ids, attention_mask)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert isinstance(out, AllHiddenStatesAndPooling)
    assert_close(out.last_hidden_state, expected)


# ---------------------------------------------------------------------------------------------------------------------
# Configs.

def test_combined_config_from_bare_checkpoint(roberta_bare):
    head_config = TokenClassificationHeadConfig(num_labels=3)
    combined = CombinedConfig.from_pretrained(str(roberta_bare), head_config=head_config,
                                              base_model_config_class=transformers.RobertaConfig)
    reference = transformers.RobertaConfig.from_pretrained(str(roberta_bare))
    assert isinstance(combined.base_model_config, transformers.RobertaConfig)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size"):
        assert getattr(combined.base_model_config, key) == getattr(reference, key)
    assert combined.head_config == head_config
    assert combined.hidden_size == combined.base_model_config.hidden_size  # attribute fallback
    assert combined.num_hidden_layers == reference.num_hidden_layers


# ---------------------------------------------------------------------------------------------------------------------
# archit.util

class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    width: int
    colour: Colour = Colour.RED


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=lambda: Inner(1))


def test_dataclass_from_dict_nested_and_enum():
    expected = Outer(name="x", inner=Inner(width=7, colour=Colour.BLUE))
    assert dataclass_from_dict(Outer, {"name": "x", "inner": {"width": 7, "colour": "blue"}}) == expected


def test_dataclass_from_dict_head_config():
    assert dataclass_from_dict(TokenClassificationHeadConfig, {"num_labels": 4}) \
        == TokenClassificationHeadConfig(num_labels=4)
    # A stored MLM head config without epsilon and activation is the published ArchIt's: its head used these.
    assert dataclass_from_dict(MaskedLMHeadConfig, {"tie_weights": False}) \
        == MaskedLMHeadConfig(tie_weights=False, layer_norm_eps=1e-5, hidden_act="gelu")


def test_parameter_count():
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    module[0].weight.requires_grad_(False)
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable != total
    assert parameterCount(module) == (trainable, total)


def test_parameter_count_base_vs_head():
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(
        RobertaBaseModel(roberta_config()), TokenClassificationHeadConfig(num_labels=3))
    model.base_model.embeddings.requires_grad_(False)

    def count(params):
        params = list(params)
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    base, head = parameterCountBaseVsHead(model)
    assert base == count(model.base_model.parameters())
    assert head == count(model.head.parameters())
    assert head == (HIDDEN * 3 + 3, HIDDEN * 3 + 3)


@pytest.mark.parametrize("layout", ["safetensors", "sharded-safetensors", "bin"])
def test_checkpoint_to_state_dict(tmp_path, layout):
    model = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3))
    if layout == "bin":
        model.config.save_pretrained(str(tmp_path))
        torch.save(model.state_dict(), str(tmp_path / "pytorch_model.bin"))
    else:
        model.save_pretrained(str(tmp_path), **({"max_shard_size": "50KB"} if layout.startswith("sharded") else {}))
    if layout.startswith("sharded"):
        assert (tmp_path / "model.safetensors.index.json").is_file()
    expected = read_checkpoint_tensors(tmp_path)
    state_dict = checkpointToStateDict(str(tmp_path))
    assert set(state_dict) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state_dict[key], tensor), key



def test_checkpoint_reader_reads_every_shard_and_keeps_no_path_list(tmp_path):
    """CheckpointReader holds each key's source (an open safetensors file, or a loaded ``.bin`` dict) and no list of
    the paths it was built from, which nothing read; leaving it closes the files and forgets the keys."""
    model = build_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=3))
    model.save_pretrained(str(tmp_path), max_shard_size="50KB")
    paths = find_weight_files(str(tmp_path))
    assert len(paths) > 1
    expected = read_checkpoint_tensors(tmp_path)
    with CheckpointReader(paths) as reader:
        assert not hasattr(reader, "paths")
        assert set(reader.keys()) == set(expected)
        for key in reader.keys():
            assert torch.equal(reader.get(key), expected[key]), key
    assert reader.keys() == []
