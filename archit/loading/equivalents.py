"""
Where transformers' task models keep the heads that compute what an archit head computes, per family, in one place.

``family_head_keys(model_type)`` answers ``{hfEquivalentSuffix: {transformers key prefix: archit head key prefix}}``: the
names most families use (``classifier.``, ``qa_outputs.``, ``lm_head.``), and, for the families whose masked-LM or
sequence classification head archit's heads reproduce, those heads' names. Importing a task checkpoint and exporting
to a transformers class (``ModelWithHead.toHuggingFace``) both read it.
"""
from typing import Dict, Optional

__all__ = ["family_head_keys", "HF_AUTO_CLASSES", "OUTPUT_EMBEDDINGS"]

HeadKeys = Dict[str, Dict[str, str]]

OUTPUT_EMBEDDINGS = "<output embeddings>."
"""Stands for the prefix of the module that the transformers task model's ``get_output_embeddings()`` returns: the
task class knows its own output matrix, under the name of the installed release (GPT-NeoX's ``embed_out`` up to 5.13,
``lm_head`` from 5.14), so no family needs a line here for it."""

# The names most families use. Decoders (Llama, Mistral, Qwen2, ...) call their token classifier ``score``.
_COMMON: HeadKeys = {
    "ForTokenClassification": {"classifier.": "dense.", "score.": "dense."},
    "ForQuestionAnswering": {"qa_outputs.": "dense."},
    "ForCausalLM": {OUTPUT_EMBEDDINGS: "dense."},
}

# RoBERTa's LM head (dense, gelu, layer norm, decoder with bias) and classification head (first token, dropout, dense,
# tanh, dropout, out_proj) are exactly MaskedLMHead and SequenceClassificationHead(pooling="first").
_ROBERTA_LIKE: HeadKeys = {
    "ForMaskedLM": {"lm_head.dense.": "dense1.", "lm_head.layer_norm.": "layer_norm.",
                    "lm_head.decoder.": "dense2.", "lm_head.bias": "dense2.bias"},
    "ForSequenceClassification": {"classifier.dense.": "dense1.", "classifier.out_proj.": "dense2."},
}

# BERT's LM head: transform (dense, hidden_act, LayerNorm), decoder with bias. Its sequence classifier runs the pooler
# before dropout, so SequenceClassificationHead is not the same function in training; it is not imported.
_BERT_LIKE: HeadKeys = {
    "ForMaskedLM": {"cls.predictions.transform.dense.": "dense1.", "cls.predictions.transform.LayerNorm.": "layer_norm.",
                    "cls.predictions.decoder.": "dense2.", "cls.predictions.bias": "dense2.bias"},
}

_FAMILIES: Dict[str, HeadKeys] = {
    "roberta": _ROBERTA_LIKE,
    "xlm-roberta": _ROBERTA_LIKE,
    "camembert": _ROBERTA_LIKE,
    "bert": _BERT_LIKE,
}

# The transformers Auto class that builds a family's task model for each archit head suffix.
HF_AUTO_CLASSES = {
    "ForTokenClassification": "AutoModelForTokenClassification",
    "ForQuestionAnswering": "AutoModelForQuestionAnswering",
    "ForSequenceClassification": "AutoModelForSequenceClassification",
    "ForMaskedLM": "AutoModelForMaskedLM",
    "ForCausalLM": "AutoModelForCausalLM",
}


def family_head_keys(model_type: Optional[str]) -> HeadKeys:
    """The head key correspondences of the family ``model_type`` (a transformers config's ``model_type``)."""
    return {**_COMMON, **_FAMILIES.get(model_type or "", {})}
