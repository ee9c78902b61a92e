"""
The names the fields of ``BaseModelConfig`` have in transformers' families, in one place, and reading a family's config
through them. ``BaseModel.standardiseConfig`` uses this; a family whose fields mean something else overrides it.

Most families answer to the first name of each field: ``PretrainedConfig.attribute_map`` aliases make DistilBERT's
``dim``, GPT-2's ``n_embd`` or T5's ``d_model`` readable as ``hidden_size``. The other names are the families' own.
"""
from typing import Any, Dict, Optional, Tuple

from transformers import PretrainedConfig

from .configs import BaseModelConfig

__all__ = ["FIELD_NAMES", "read_field", "read_standard_fields"]

FIELD_NAMES: Dict[str, Tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "d_model", "n_embd", "dim"),
    # Falcon/Bloom: hidden_dropout; DistilBERT, OPT, BART: dropout; GPT-2, GPT-J: resid_pdrop; T5: dropout_rate;
    # ModernBERT has only per-module dropouts and its heads' classifier_dropout (the published ArchIt's choice).
    "hidden_dropout_prob": ("hidden_dropout_prob", "hidden_dropout", "dropout", "resid_pdrop", "dropout_rate",
                            "classifier_dropout"),
    "vocab_size": ("vocab_size",),  # None for CANINE, which reads characters.
    "num_hidden_layers": ("num_hidden_layers", "n_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_heads", "n_head", "num_heads"),
    "context_length": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"),  # None: no limit (ALiBi, ...)
    "layer_norm_eps": ("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps", "norm_eps"),
    "hidden_act": ("hidden_act", "activation", "activation_function", "hidden_activation"),
}

_DEFAULTS: Dict[str, Any] = {"hidden_dropout_prob": 0.0}  # Decoders such as Llama have no dropout.
_REQUIRED = ("hidden_size",)  # Every head reads it.


def read_field(raw_config: PretrainedConfig, field: str) -> Optional[Any]:
    """The value of the ``BaseModelConfig`` field ``field`` in ``raw_config``: under the first of its ``FIELD_NAMES``
    that the config sets (not to ``None``); the field's default (``None`` for most) if it sets none of them."""
    for name in FIELD_NAMES[field]:
        value = getattr(raw_config, name, None)
        if value is not None:
            return value
    if field in _REQUIRED:
        raise ValueError(_missing_field_message(raw_config, field))
    return _DEFAULTS.get(field)


def _missing_field_message(raw_config: PretrainedConfig, field: str) -> str:
    """What archit looked for, what the config has instead, and the two ways to tell archit which field it is."""
    name = type(raw_config).__name__
    common = PretrainedConfig().to_dict()  # The fields every config has: not candidates.
    numbers = sorted(f"{key}={value}" for key, value in raw_config.to_dict().items()
                     if key not in common and isinstance(value, int) and not isinstance(value, bool))
    candidates = f" Its own integer fields: {', '.join(numbers)}." if numbers else ""
    return (f"{name} (model_type '{getattr(raw_config, 'model_type', None)}') has none of the fields "
            f"{', '.join(FIELD_NAMES[field])}, which archit reads as a base model's {field} (every head needs it)."
            f"{candidates} Tell archit which field it is: give {name} the alias transformers' configs use, "
            f"attribute_map = {{\"{field}\": \"<its field>\"}} (in its configuration file), or subclass the base "
            f"model class and override standardiseConfig(), e.g. return read_standard_fields(raw_config, "
            f"{field}=raw_config.<its field>) (archit.instantiation.standardisation.read_standard_fields).")


def read_standard_fields(raw_config: PretrainedConfig, **overrides: Any) -> BaseModelConfig:
    """``raw_config`` read into a ``BaseModelConfig`` through ``FIELD_NAMES``; ``overrides`` set fields directly."""
    values: Dict[str, Any] = {field: read_field(raw_config, field) for field in FIELD_NAMES if field not in overrides}
    return BaseModelConfig(**values, **overrides)
