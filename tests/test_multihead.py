"""Several heads on one body (``ModelWithHeads``), on RoBERTa and on a Llama decoder through ``AutoBaseModel``: each
head's logits equal its single-task model's on the same weights, the loss is the weighted sum of the single-task
losses, the body runs once, and saving, head-only files, imports, ``asTask`` and ``fromTaskModels`` keep all that."""
import json

import pytest
import torch
import transformers

from archit import _compat as compat
from archit.instantiation.basemodels import AutoBaseModel, RobertaBaseModel
from archit.instantiation.heads import (
    CausalLMHeadConfig,
    DependencyParsingHeadConfig,
    ExtractiveQAHeadConfig,
    MaskedLMHeadConfig,
    SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig,
)
from archit.instantiation.multihead import ModelWithHeads, MultiHeadConfig
from archit.instantiation.tasks import (
    ForCausalLM,
    ForDependencyParsing,
    ForExtractiveQA,
    ForMaskedLM,
    ForSingleAnswerMultipleChoice,
    ForSingleLabelSequenceClassification,
    ForSingleLabelTokenClassification,
)

from tests.helpers import (
    HIDDEN,
    assert_same_outputs,
    llama_config,
    load_archit,
    make_inputs,
    perturb_,
    roberta_config,
    save_transformers_model,
)

BODIES = {
    "roberta": (RobertaBaseModel, transformers.RobertaModel, roberta_config, ForMaskedLM, MaskedLMHeadConfig),
    "llama-auto": (AutoBaseModel, transformers.LlamaModel, llama_config, ForCausalLM, CausalLMHeadConfig),
}


@pytest.fixture(params=sorted(BODIES))
def body(request, tmp_path_factory):
    base_class, core_class, make_config, lm_task, lm_config = BODIES[request.param]
    directory = tmp_path_factory.mktemp(f"body-{request.param}")
    save_transformers_model(core_class, make_config(), directory)
    return directory, base_class, lm_task, lm_config


def single_task_models(body):
    """Three single-task models on the same body checkpoint, each with its own seeded head."""
    directory, base_class, lm_task, lm_config = body
    specs = {"ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
             "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3)),
             "lm": (lm_task, lm_config())}
    models = {}
    for seed, (name, (task, head_config)) in enumerate(specs.items()):
        model = load_archit(task, directory, base_class=base_class, head_config=head_config)
        body_parameters = {id(p) for p in model.model.parameters()}
        with torch.no_grad():  # Seeded head weights; a tied output matrix is the body's and stays as loaded.
            own = [p for p in model.head.parameters() if id(p) not in body_parameters]
            perturbed = perturb_(torch.nn.ParameterList([torch.nn.Parameter(p.detach().clone()) for p in own]), seed + 1)
            for target, value in zip(own, perturbed):
                target.copy_(value)
        models[name] = model.eval()
    return models


def labels_for(input_ids, attention_mask):
    generator = torch.Generator().manual_seed(3)
    return {"ner": torch.randint(0, 5, input_ids.shape, generator=generator).masked_fill(attention_mask == 0, -100),
            "sentiment": torch.randint(0, 3, (input_ids.shape[0],), generator=generator),
            "lm": input_ids.masked_fill(attention_mask == 0, -100)}


def shared_body(models):
    """The single-task models loaded the same body weights; give them literally one body, as fromTaskModels does."""
    return ModelWithHeads.fromTaskModels(models).eval()


@pytest.mark.parametrize("names", [("ner", "sentiment"), ("ner", "sentiment", "lm")], ids=["two", "three"])
def test_heads_equal_their_single_task_models(body, names):
    singles = single_task_models(body)
    expected = {}
    input_ids, attention_mask = make_inputs()
    labels = labels_for(input_ids, attention_mask)
    with torch.no_grad():
        for name in names:
            out = singles[name](input_ids, attention_mask, labels=labels[name])
            expected[name] = (out.logits, out.loss)
    model = shared_body({name: singles[name] for name in names})
    calls = []
    model.model.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels={n: labels[n] for n in names})
    assert len(calls) == 1  # One body pass, whatever the number of heads.
    assert sorted(out.logits) == sorted(names)
    for name in names:
        assert_same_outputs(out.logits[name], expected[name][0])
        assert_same_outputs(out.losses[name], expected[name][1])
    assert_same_outputs(out.loss, sum(expected[name][1] for name in names))


def test_loss_weights_and_head_selection(body):
    singles = single_task_models(body)
    input_ids, attention_mask = make_inputs()
    labels = labels_for(input_ids, attention_mask)
    model = ModelWithHeads.fromTaskModels({n: singles[n] for n in ("ner", "sentiment")},
                                          loss_weights={"ner": 0.25}).eval()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    labels={n: labels[n] for n in ("ner", "sentiment")})
        only = model(input_ids=input_ids, attention_mask=attention_mask, heads=["sentiment"],
                     labels={"sentiment": labels["sentiment"]})
    assert_same_outputs(out.loss, 0.25 * out.losses["ner"] + out.losses["sentiment"])
    assert list(only.logits) == ["sentiment"]
    assert_same_outputs(only.loss, out.losses["sentiment"])
    with pytest.raises(KeyError, match="nope"):
        model(input_ids=input_ids, attention_mask=attention_mask, heads=["nope"])
    with pytest.raises(ValueError, match="ner"):
        model(input_ids=input_ids, attention_mask=attention_mask, heads=["sentiment"], labels={"ner": labels["ner"]})


def test_save_and_reload_all_heads(body, tmp_path):
    singles = single_task_models(body)
    model = shared_body(singles)
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert sorted(config["heads"]) == ["lm", "ner", "sentiment"]
    assert config["heads"]["ner"]["task"] == "ForSingleLabelTokenClassification"
    assert config["heads"]["ner"]["head_config"]["num_labels"] == 5

    reloaded = ModelWithHeads.from_pretrained(str(tmp_path), body[1], attn_implementation="eager").eval()
    assert reloaded.asTask("lm").tiesWeights() == model.asTask("lm").tiesWeights()
    if reloaded.asTask("lm").tiesWeights():
        assert reloaded.heads["lm"].get_submodule(_output_name(reloaded, "lm")).weight is \
            reloaded.get_input_embeddings().weight
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        before, after = model(input_ids, attention_mask), reloaded(input_ids, attention_mask)
    for name in before.logits:
        assert_same_outputs(after.logits[name], before.logits[name])


def test_config_class_reads_every_checkpoint_its_models_load_from(tmp_path):
    """MultiHeadConfig.from_pretrained, as transformers' config classes (peft calls model.config.__class__.from_pretrained
    on the checkpoint a model came from when it saves an adapter): a multi-head checkpoint's heads and loss weights, a
    single-task checkpoint's head under its task's name, none for a base model's checkpoint."""
    base = RobertaBaseModel(roberta_config())
    model = ModelWithHeads.fromModelAndHeadConfigs(base, {
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "qa": (ForExtractiveQA, ExtractiveQAHeadConfig())}, loss_weights={"ner": 0.5})
    model.save_pretrained(str(tmp_path / "multi"))
    config = MultiHeadConfig.from_pretrained(str(tmp_path / "multi"))
    assert config.heads == model.config.heads and config.loss_weights == {"ner": 0.5, "qa": 1.0}
    assert config.vocab_size == base.config.vocab_size

    model.asTask("ner").save_pretrained(str(tmp_path / "single"))
    assert MultiHeadConfig.from_pretrained(str(tmp_path / "single")).heads == {
        "ForSingleLabelTokenClassification": model.config.heads["ner"]}
    save_transformers_model(transformers.RobertaModel, roberta_config(), tmp_path / "bare")
    bare = MultiHeadConfig.from_pretrained(str(tmp_path / "bare"))
    assert bare.heads == {} and bare.vocab_size == base.config.vocab_size
    with pytest.raises(TypeError, match="heads="):
        MultiHeadConfig.from_pretrained(str(tmp_path / "multi"), head_config=TokenClassificationHeadConfig())


def _output_name(model, name):
    output = model.asTask(name).get_output_embeddings()
    return next(n for n, m in model.heads[name].named_modules() if m is output)


def test_one_head_checkpoints_move_between_single_and_multi_head(body, tmp_path):
    singles = single_task_models(body)
    tagger = singles["ner"]
    tagger.save_pretrained(str(tmp_path / "single"))
    as_multi = ModelWithHeads.from_pretrained(str(tmp_path / "single"), body[1], attn_implementation="eager").eval()
    assert list(as_multi.heads) == ["ForSingleLabelTokenClassification"]
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        expected = tagger(input_ids, attention_mask).logits
        assert_same_outputs(as_multi(input_ids, attention_mask).logits["ForSingleLabelTokenClassification"], expected)

    ModelWithHeads.fromTaskModels({"ner": tagger}).save_pretrained(str(tmp_path / "multi"))
    as_single = load_archit(ForSingleLabelTokenClassification, tmp_path / "multi", base_class=body[1])
    assert as_single.config.head_config == tagger.config.head_config
    with torch.no_grad():
        assert_same_outputs(as_single(input_ids, attention_mask).logits, expected)


def test_head_files_are_small_and_reload(body, tmp_path):
    singles = single_task_models(body)
    model = shared_body(singles)
    model.saveHead("ner", str(tmp_path / "ner"))
    model.saveHead("lm", str(tmp_path / "lm"))
    body_bytes = sum(p.numel() * p.element_size() for p in model.model.parameters())
    head_bytes = (tmp_path / "ner" / "head.safetensors").stat().st_size
    assert head_bytes < 0.1 * body_bytes

    fresh = ModelWithHeads.fromModelAndHeadConfigs(model.model, {})
    assert fresh.loadHead(str(tmp_path / "ner")) == "ner"
    assert fresh.loadHead(str(tmp_path / "lm"), name="lm2") == "lm2"
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out, expected = fresh.eval()(input_ids, attention_mask), model(input_ids, attention_mask)
    assert_same_outputs(out.logits["ner"], expected.logits["ner"])
    assert_same_outputs(out.logits["lm2"], expected.logits["lm"])


def test_head_files_refused_by_another_body(body, tmp_path):
    directory, base_class, _, _ = body
    model = shared_body(single_task_models(body))
    model.saveHead("ner", str(tmp_path / "ner"))
    other_config = (roberta_config if base_class is RobertaBaseModel else llama_config)(hidden_size=HIDDEN * 2)
    other = ModelWithHeads.fromModelAndHeadConfigs(
        RobertaBaseModel(other_config) if base_class is RobertaBaseModel else AutoBaseModel(other_config), {})
    with pytest.raises(ValueError, match="hidden_size: 32 there, 64 here"):
        other.loadHead(str(tmp_path / "ner"))
    assert "ner" not in other.heads


def test_add_head_from_transformers_task_checkpoint_reproduces_transformers(tmp_path):
    reference = save_transformers_model(transformers.RobertaForTokenClassification, roberta_config(num_labels=4),
                                        tmp_path / "pos")
    model = ModelWithHeads.from_pretrained(str(tmp_path / "pos"), RobertaBaseModel, {
        "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3))},
        attn_implementation="eager")
    model.addHead("pos", ForSingleLabelTokenClassification, checkpoint=str(tmp_path / "pos"),
                  attn_implementation="eager")
    assert model.config.heads["pos"][1] == TokenClassificationHeadConfig(num_labels=4)
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).logits
        assert_same_outputs(model.eval()(input_ids, attention_mask).logits["pos"], expected)


def test_add_and_remove_heads(body):
    model = shared_body(single_task_models(body))
    model.addHead("qa", ForExtractiveQA, ExtractiveQAHeadConfig())
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert model(input_ids, attention_mask).logits["qa"].shape == (*input_ids.shape, 2)
    model.removeHead("qa")
    assert "qa" not in model.heads and "qa" not in model.config.heads
    with pytest.raises(KeyError):
        model.addHead("ner", ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=2))


def test_as_task_shares_parameters_and_exports(body):
    model = shared_body(single_task_models(body))
    tagger = model.asTask("ner")
    assert isinstance(tagger, ForSingleLabelTokenClassification)
    assert tagger.head is model.heads["ner"] and tagger.model is model.model
    with torch.no_grad():
        model.heads["ner"].dense.weight.add_(1.0)
    assert tagger.head.dense.weight is model.heads["ner"].dense.weight
    input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        assert_same_outputs(tagger(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits["ner"])
    if hasattr(transformers, "LlamaForTokenClassification") or body[1] is RobertaBaseModel:
        exported = tagger.toHuggingFace()
        assert isinstance(exported, transformers.PreTrainedModel)


def test_from_task_models_refuses_different_bases(body):
    singles = single_task_models(body)
    with torch.no_grad():
        singles["sentiment"].model.get_input_embeddings().weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="different base weights"):
        ModelWithHeads.fromTaskModels(singles)


@pytest.mark.parametrize("task, head_config", [
    (ForSingleAnswerMultipleChoice, SequenceClassificationHeadConfig(num_labels=1)),
    (ForDependencyParsing, DependencyParsingHeadConfig()),
], ids=["multiple-choice", "dependency-parsing"])
def test_tasks_with_reshaped_inputs_are_refused(task, head_config):
    base = RobertaBaseModel(roberta_config())
    with pytest.raises(ValueError, match="reshapes its inputs"):
        ModelWithHeads.fromModelAndHeadConfigs(base, {"x": (task, head_config)})


def test_trainer_moves_every_labelled_head(tmp_path):
    base = RobertaBaseModel(roberta_config())
    model = ModelWithHeads.fromModelAndHeadConfigs(base, {
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3))})
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    input_ids, attention_mask = make_inputs()
    labels = labels_for(input_ids, attention_mask)
    rows = [{"input_ids": input_ids[i], "attention_mask": attention_mask[i],
             "labels": {"ner": labels["ner"][i], "sentiment": labels["sentiment"][i]}} for i in range(2)]

    def collate(batch):
        return {"input_ids": torch.stack([r["input_ids"] for r in batch]),
                "attention_mask": torch.stack([r["attention_mask"] for r in batch]),
                "labels": {name: torch.stack([r["labels"][name] for r in batch]) for name in ("ner", "sentiment")}}
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                                               learning_rate=1e-2, report_to=[], save_strategy="no",
                                               use_cpu=True, remove_unused_columns=False)
    transformers.Trainer(model=model, args=arguments, train_dataset=rows, data_collator=collate).train()
    for head in ("ner", "sentiment"):
        key = f"heads.{head}.dense2.weight" if head == "sentiment" else f"heads.{head}.dense.weight"
        assert not torch.equal(dict(model.named_parameters())[key], before[key]), head
    assert not torch.equal(model.get_input_embeddings().weight, before["model._core.embeddings.word_embeddings.weight"])


def test_trainer_predictions_are_the_logits_by_head(tmp_path):
    """Under Trainer.evaluate/predict, EvalPrediction.predictions is the dict of logits by head (as a one-head model's
    are its logits: no pair with the losses by head), concatenated over batches, and label_ids the dict of labels."""
    torch.manual_seed(0)
    model = ModelWithHeads.fromModelAndHeadConfigs(RobertaBaseModel(roberta_config()), {
        "ner": (ForSingleLabelTokenClassification, TokenClassificationHeadConfig(num_labels=5)),
        "sentiment": (ForSingleLabelSequenceClassification, SequenceClassificationHeadConfig(num_labels=3))}).eval()
    input_ids, attention_mask = make_inputs()
    labels = labels_for(input_ids, attention_mask)
    rows = [{"input_ids": input_ids[i % 2], "attention_mask": attention_mask[i % 2],
             "labels": {"ner": labels["ner"][i % 2], "sentiment": labels["sentiment"][i % 2]}} for i in range(4)]

    def collate(batch):
        return {"input_ids": torch.stack([r["input_ids"] for r in batch]),
                "attention_mask": torch.stack([r["attention_mask"] for r in batch]),
                "labels": {name: torch.stack([r["labels"][name] for r in batch]) for name in ("ner", "sentiment")}}

    seen = []

    def compute_metrics(prediction):
        seen.append(prediction)
        sentiment = prediction.predictions["sentiment"].argmax(-1)
        return {"sentiment_accuracy": float((sentiment == prediction.label_ids["sentiment"]).mean())}

    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[],
                                               use_cpu=True, remove_unused_columns=False)
    trainer = transformers.Trainer(model=model, args=arguments, data_collator=collate, compute_metrics=compute_metrics)
    metrics = trainer.evaluate(rows)
    predicted = trainer.predict(rows)
    assert "eval_sentiment_accuracy" in metrics and "test_sentiment_accuracy" in predicted.metrics
    with torch.no_grad():
        expected = model(input_ids, attention_mask).logits
    for prediction in (seen[0], predicted):
        assert isinstance(prediction.predictions, dict), type(prediction.predictions)
        assert set(prediction.predictions) == {"ner", "sentiment"}
        for name, logits in prediction.predictions.items():
            torch.testing.assert_close(torch.from_numpy(logits), torch.cat([expected[name]] * 2), atol=1e-5, rtol=1e-4)
        assert set(prediction.label_ids) == {"ner", "sentiment"}
        assert (prediction.label_ids["sentiment"] == torch.cat([labels["sentiment"]] * 2).numpy()).all()


def test_gradient_checkpointing_reaches_the_body_and_keeps_gradients(body):
    model = shared_body(single_task_models(body)).train()
    input_ids, attention_mask = make_inputs()
    labels = labels_for(input_ids, attention_mask)
    torch.manual_seed(2)
    model(input_ids, attention_mask, labels=labels).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # use_reentrant explicitly: 4.36-4.37 leave it to torch, which warns that it must be passed.
    compat.enable_activation_checkpointing(model, {"use_reentrant": False})
    assert compat.is_activation_checkpointing(model.base_model)
    torch.manual_seed(2)
    model(input_ids, attention_mask, labels=labels).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain[name], msg=name)
