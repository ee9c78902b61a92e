"""Declarative classes: tasks, heads and base models name their parts with class attributes (``head_class``,
``loss_class``, ``config_class``, ``core_class``, ``hf_equivalent_suffix``) that the published class methods read.
Checked here: every published class answers the class methods as before; a subclass in the published style (overriding
the class methods, as LaMoTO does) and one in the new style (class attributes only) both build, compute their loss,
save and reload; and of an attribute and a method, the most derived declaration wins."""
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from archit.instantiation import basemodels, heads, tasks
from archit.instantiation.abstracts import BaseModel, Head, HeadConfig, ModelWithHead

from tests.helpers import assert_close, bert_config, make_inputs, roberta_config

HAS_MODERNBERT = hasattr(transformers, "ModernBertModel")

# ---------------------------------------------------------------------------------------------------------------------
# (a) The published classes answer as before.

TASK_PARTS = {  # task: (headClass(), type of buildLoss())
    tasks.ForSingleLabelTokenClassification: (heads.TokenClassificationHead, nn.CrossEntropyLoss),
    tasks.ForSingleLabelSequenceClassification: (heads.SequenceClassificationHead, nn.CrossEntropyLoss),
    tasks.ForMultiLabelSequenceClassification: (heads.SequenceClassificationHead, nn.BCEWithLogitsLoss),
    tasks.ForSequenceRegression: (heads.SequenceClassificationHead, nn.MSELoss),
    tasks.ForExtractiveQA: (heads.ExtractiveQAHead, nn.CrossEntropyLoss),
    tasks.ForCausalLM: (heads.CausalLMHead, nn.CrossEntropyLoss),
    tasks.ForMaskedLM: (heads.MaskedLMHead, nn.CrossEntropyLoss),
    tasks.ForExtractiveAQA: (heads.ExtractiveAQAHead, nn.CrossEntropyLoss),
    tasks.ForSingleAnswerMultipleChoice: (heads.SequenceClassificationHeadForNestedBatches, nn.CrossEntropyLoss),
    tasks.ForDependencyParsing: (heads.DependencyParsingHead, nn.CrossEntropyLoss),
}

FIRST = heads.SequenceClassificationHeadConfig(pooling="first")
# head: (configClass(), hfEquivalentSuffix() as the published ArchIt answers it, hfEquivalentSuffix(default config),
# hfEquivalentSuffix(FIRST))
HEAD_PARTS = {
    heads.TokenClassificationHead: (heads.TokenClassificationHeadConfig, "ForTokenClassification", None, None),
    heads.SequenceClassificationHead: (heads.SequenceClassificationHeadConfig, "ForSequenceClassification", "/",
                                       "ForSequenceClassification"),
    heads.SequenceClassificationHeadForNestedBatches: (heads.SequenceClassificationHeadConfig, "/", "/", "/"),
    heads.MaskedLMHead: (heads.MaskedLMHeadConfig, "ForMaskedLM", None, None),
    heads.CausalLMHead: (heads.CausalLMHeadConfig, "ForCausalLM", None, None),
    heads.ExtractiveQAHead: (heads.ExtractiveQAHeadConfig, "ForQuestionAnswering", None, None),
    heads.ExtractiveAQAHead: (heads.ExtractiveAQAHeadConfig, "/", None, None),
    heads.DependencyParsingHead: (heads.DependencyParsingHeadConfig, "/", None, None),
}

BASE_PARTS = {  # base model: (configClass(), coreClass())
    basemodels.RobertaBaseModel: (transformers.RobertaConfig, transformers.RobertaModel),
    basemodels.BertBaseModel: (transformers.BertConfig, transformers.BertModel),
    basemodels.GPT2BaseModel: (transformers.GPT2Config, transformers.GPT2Model),
    basemodels.DebertaBaseModel: (transformers.DebertaConfig, transformers.DebertaModel),
    basemodels.CanineBaseModel: (transformers.CanineConfig, transformers.CanineModel),
}
if HAS_MODERNBERT:
    BASE_PARTS[basemodels.ModernBertBaseModel] = (transformers.ModernBertConfig, transformers.ModernBertModel)


def test_every_published_task_and_head_is_listed():
    assert set(TASK_PARTS) == {getattr(tasks, name) for name in tasks.TASKS}
    assert set(HEAD_PARTS) == {getattr(heads, name) for name in heads.__all__
                               if isinstance(getattr(heads, name), type) and issubclass(getattr(heads, name), Head)}


@pytest.mark.parametrize("task", TASK_PARTS, ids=lambda task: task.__name__)
def test_task_names_its_head_and_loss(task):
    head_class, loss_class = TASK_PARTS[task]
    assert task.headClass() is head_class
    loss = task.buildLoss()
    assert type(loss) is loss_class
    assert loss is not task.buildLoss()  # A new module each time: a model's loss is its own.


@pytest.mark.parametrize("head", HEAD_PARTS, ids=lambda head: head.__name__)
def test_head_names_its_config_and_transformers_equivalent(head):
    config_class, suffix, suffix_default, suffix_first = HEAD_PARTS[head]
    assert head.configClass() is config_class
    assert head.hfEquivalentSuffix() == suffix
    assert head.hfEquivalentSuffix(config_class()) == (suffix_default or suffix)
    if suffix_first is not None:
        assert head.hfEquivalentSuffix(FIRST) == suffix_first


@pytest.mark.parametrize("base", BASE_PARTS, ids=lambda base: base.__name__)
def test_base_model_names_its_config_and_core(base):
    config_class, core_class = BASE_PARTS[base]
    assert base.configClass() is config_class
    assert base.config_class is config_class  # transformers' attribute agrees.
    assert base.coreClass() is core_class


def test_auto_and_modernbert_base_models():
    assert basemodels.AutoBaseModel.configClass() is transformers.PretrainedConfig
    assert basemodels.AutoBaseModel.config_class is transformers.PretrainedConfig
    with pytest.raises(TypeError, match="coreClassFor"):
        basemodels.AutoBaseModel.coreClass()
    if not HAS_MODERNBERT:
        assert basemodels.ModernBertBaseModel.config_class is None
        for method in (basemodels.ModernBertBaseModel.configClass, basemodels.ModernBertBaseModel.coreClass):
            with pytest.raises(ImportError, match="4.48"):
                method()


def test_default_constraints_accept_and_overridden_ones_still_reject():
    standard = basemodels.RobertaBaseModel.standardiseConfig(roberta_config())
    heads.ExtractiveQAHead.assertConfigConstraints(standard, heads.ExtractiveQAHeadConfig())  # Default: accepts.
    with pytest.raises(ValueError, match="num_labels"):
        heads.TokenClassificationHead.assertConfigConstraints(standard, heads.TokenClassificationHeadConfig())
    with pytest.raises(ValueError, match="ua_loss_weight"):
        heads.ExtractiveAQAHead.assertConfigConstraints(standard, heads.ExtractiveAQAHeadConfig(ua_loss_weight=-1))


def test_default_loss_is_the_cross_entropy_of_every_position():
    base = basemodels.RobertaBaseModel(roberta_config())
    model = tasks.ForMaskedLM.fromModelAndHeadConfig(base, heads.MaskedLMHeadConfig()).eval()
    input_ids, attention_mask = make_inputs()
    labels = input_ids.masked_fill(torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -100)
    out = model(input_ids, attention_mask, labels=labels)
    assert_close(out.loss, F.cross_entropy(out.logits.transpose(1, 2), labels, ignore_index=-100))


# ---------------------------------------------------------------------------------------------------------------------
# (b), (c) A task, head and base model written in the published style and in the new style.

NUM_LABELS = 3


@dataclass
class TaggerHeadConfig(HeadConfig):
    num_labels: int = NUM_LABELS
    bias: bool = True


class TaggerLayers(Head):
    """One linear layer per token; subclasses declare the rest."""

    def __init__(self, base_config, head_config: TaggerHeadConfig):
        super().__init__(base_config, head_config)
        self.dense = nn.Linear(base_config.hidden_size, head_config.num_labels, bias=head_config.bias)
        self.post_init()

    def forward(self, encoder_output, attention_mask, **kwargs):
        return self.dense(encoder_output.last_hidden_state)


class PublishedStyleHead(TaggerLayers):
    @classmethod
    def configClass(cls):
        return TaggerHeadConfig

    @classmethod
    def assertConfigConstraints(cls, base_config, head_config):
        if head_config.num_labels < 1:
            raise ValueError("PublishedStyleHead needs num_labels >= 1")

    @classmethod
    def hfEquivalentSuffix(cls, head_config=None):
        return "ForTokenClassification" if head_config is not None and head_config.bias else "/"


class PublishedStyleBase(BaseModel[transformers.RobertaConfig]):
    @classmethod
    def configClass(cls):
        return transformers.RobertaConfig

    @classmethod
    def coreClass(cls):
        return transformers.RobertaModel


class PublishedStyleTask(ModelWithHead):
    @classmethod
    def headClass(cls):
        return PublishedStyleHead

    @classmethod
    def buildLoss(cls):
        return nn.CrossEntropyLoss(label_smoothing=0.1)

    def computeLoss(self, logits, labels):
        return self.loss_function(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))


class NewStyleHead(TaggerLayers):
    config_class = TaggerHeadConfig
    hf_equivalent_suffix = "ForTokenClassification"


class NewStyleBase(BaseModel[transformers.RobertaConfig]):
    config_class = transformers.RobertaConfig
    core_class = transformers.RobertaModel


class NewStyleTask(ModelWithHead):
    head_class = NewStyleHead


STYLES = {  # task, base model, expected loss of logits and labels
    "published": (PublishedStyleTask, PublishedStyleBase,
                  lambda logits, labels: F.cross_entropy(logits.transpose(1, 2), labels, label_smoothing=0.1)),
    "new": (NewStyleTask, NewStyleBase, lambda logits, labels: F.cross_entropy(logits.transpose(1, 2), labels)),
}


def test_published_style_declarations():
    assert PublishedStyleTask.headClass() is PublishedStyleHead
    assert isinstance(PublishedStyleTask.buildLoss(), nn.CrossEntropyLoss)
    assert PublishedStyleTask.buildLoss().label_smoothing == 0.1
    assert PublishedStyleHead.configClass() is TaggerHeadConfig
    assert PublishedStyleHead.hfEquivalentSuffix(TaggerHeadConfig()) == "ForTokenClassification"
    assert PublishedStyleHead.hfEquivalentSuffix(TaggerHeadConfig(bias=False)) == "/"
    assert PublishedStyleBase.configClass() is transformers.RobertaConfig
    assert PublishedStyleBase.config_class is transformers.RobertaConfig  # Set from configClass() for transformers.
    assert PublishedStyleBase.coreClass() is transformers.RobertaModel
    standard = PublishedStyleBase.standardiseConfig(roberta_config())
    with pytest.raises(ValueError, match="num_labels >= 1"):
        PublishedStyleTask.fromModelAndHeadConfig(PublishedStyleBase(roberta_config()), TaggerHeadConfig(num_labels=0))
    PublishedStyleHead.assertConfigConstraints(standard, TaggerHeadConfig())


def test_new_style_declarations():
    assert NewStyleTask.headClass() is NewStyleHead
    assert type(NewStyleTask.buildLoss()) is nn.CrossEntropyLoss
    assert NewStyleHead.configClass() is TaggerHeadConfig
    assert NewStyleHead.hfEquivalentSuffix() == NewStyleHead.hfEquivalentSuffix(TaggerHeadConfig()) \
        == "ForTokenClassification"
    assert NewStyleBase.configClass() is NewStyleBase.config_class is transformers.RobertaConfig
    assert NewStyleBase.coreClass() is transformers.RobertaModel


@pytest.mark.parametrize("style", sorted(STYLES))
def test_subclass_builds_trains_saves_and_reloads(style, tmp_path):
    task, base_class, expected_loss = STYLES[style]
    torch.manual_seed(0)
    model = task.fromModelAndHeadConfig(base_class(roberta_config()), TaggerHeadConfig()).eval()
    assert type(model.head) is task.headClass()
    assert type(model.base_model) is transformers.RobertaModel

    input_ids, attention_mask = make_inputs()
    labels = torch.randint(0, NUM_LABELS, input_ids.shape, generator=torch.Generator().manual_seed(2))
    out = model(input_ids, attention_mask, labels=labels)
    assert out.logits.shape == (*input_ids.shape, NUM_LABELS)
    assert_close(out.loss, expected_loss(out.logits, labels))
    out.loss.backward()
    assert model.head.dense.weight.grad is not None and model.base_model.embeddings.word_embeddings.weight.grad.any()

    model.save_pretrained(str(tmp_path))
    reloaded = task.from_pretrained(str(tmp_path), base_class, attn_implementation="eager").eval()
    assert type(reloaded.head) is task.headClass()
    assert reloaded.config.head_config == TaggerHeadConfig()
    assert isinstance(reloaded.config.base_model_config, transformers.RobertaConfig)
    again = reloaded(input_ids, attention_mask, labels=labels)
    assert_close(again.logits, out.logits)
    assert_close(again.loss, out.loss)


# ---------------------------------------------------------------------------------------------------------------------
# Mixing the styles: the most derived declaration wins.

def test_attribute_in_subclass_overrides_a_parents_class_method():
    class BertOverPublished(PublishedStyleBase):
        config_class = transformers.BertConfig
        core_class = transformers.BertModel

    class Retagger(PublishedStyleTask):
        head_class = NewStyleHead
        loss_class = nn.MSELoss

    class Relabeller(PublishedStyleHead):
        config_class = heads.TokenClassificationHeadConfig
        hf_equivalent_suffix = "/"

    assert BertOverPublished.configClass() is BertOverPublished.config_class is transformers.BertConfig
    assert BertOverPublished.coreClass() is transformers.BertModel
    assert type(BertOverPublished(bert_config()).base_model) is transformers.BertModel
    assert Retagger.headClass() is NewStyleHead
    assert type(Retagger.buildLoss()) is nn.MSELoss
    assert Relabeller.configClass() is heads.TokenClassificationHeadConfig
    assert Relabeller.hfEquivalentSuffix(TaggerHeadConfig()) == "/"
    # The parents are untouched.
    assert PublishedStyleBase.configClass() is PublishedStyleBase.config_class is transformers.RobertaConfig
    assert PublishedStyleTask.headClass() is PublishedStyleHead
    assert PublishedStyleHead.hfEquivalentSuffix(TaggerHeadConfig()) == "ForTokenClassification"


def test_class_method_in_subclass_overrides_a_parents_attribute():
    class BertOverNew(NewStyleBase):
        @classmethod
        def configClass(cls):
            return transformers.BertConfig

    class Retagger(NewStyleTask):
        @classmethod
        def headClass(cls):
            return PublishedStyleHead

    assert BertOverNew.configClass() is BertOverNew.config_class is transformers.BertConfig
    assert Retagger.headClass() is PublishedStyleHead
    assert NewStyleBase.config_class is transformers.RobertaConfig and NewStyleTask.headClass() is NewStyleHead


def test_subclass_declaring_nothing_keeps_its_parents_class_method():
    """A published-style ``configClass()`` computed from something else than ``config_class`` keeps being asked in
    subclasses (transformers 5 writes the inherited ``config_class`` into every subclass: that is no declaration)."""
    class ByFamily(BaseModel):
        family = transformers.RobertaConfig

        @classmethod
        def configClass(cls):
            return cls.family

    class BertByFamily(ByFamily):
        family = transformers.BertConfig

    assert BertByFamily.configClass() is BertByFamily.config_class is transformers.BertConfig
    assert ByFamily.configClass() is ByFamily.config_class is transformers.RobertaConfig


def test_undeclared_parts_say_what_to_declare():
    class NoHead(ModelWithHead):
        pass

    class NoConfig(TaggerLayers):
        pass

    class NoCore(BaseModel):
        pass

    with pytest.raises(NotImplementedError, match="head_class"):
        NoHead.headClass()
    with pytest.raises(NotImplementedError, match="config_class"):
        NoConfig.configClass()
    with pytest.raises(NotImplementedError, match="core_class"):
        NoCore.coreClass()
    assert NoCore.configClass() is None and NoCore.config_class is None  # Abstract: transformers' "no config class".
    assert NoHead.config_class is ModelWithHead.config_class  # transformers' attribute of the whole model is kept.


def test_family_missing_from_transformers_can_still_be_declared():
    """As ModernBERT before transformers 4.48: the class is defined, and using it raises the ImportError."""
    class Future(BaseModel):
        @classmethod
        def configClass(cls):
            raise ImportError("Future needs transformers 99")

    class FutureChild(Future):
        pass

    for cls in (Future, FutureChild):
        assert cls.config_class is None
        with pytest.raises(ImportError, match="transformers 99"):
            cls.configClass()
