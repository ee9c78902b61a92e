"""Loading and saving archit models on every transformers release, with public building blocks only
(safetensors, accelerate, ``torch.load(weights_only=True)``) and the ``compat`` facade."""
from .hfmodels import to_hugging_face as to_hugging_face
from .loader import load_base_model as load_base_model
from .loader import load_model_with_head as load_model_with_head
from .saving import save_model_with_head as save_model_with_head

__all__ = ["load_model_with_head", "load_base_model", "save_model_with_head", "to_hugging_face"]
