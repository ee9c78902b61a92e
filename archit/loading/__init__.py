"""Loading and saving archit models on every transformers release, with public building blocks only
(safetensors, accelerate, ``torch.load(weights_only=True)``) and the ``compat`` facade."""
from .headfiles import read_head_files as read_head_files
from .headfiles import save_head_files as save_head_files
from .hfmodels import to_hugging_face as to_hugging_face
from .loader import load_base_model as load_base_model
from .loader import load_model_from_parts as load_model_from_parts
from .loader import load_model_with_head as load_model_with_head
from .loader import load_model_with_heads as load_model_with_heads
from .loader import plan_base_loading as plan_base_loading
from .loader import plan_heads_loading as plan_heads_loading
from .loader import plan_loading as plan_loading
from .planning import LoadPlan as LoadPlan
from .saving import save_model_with_head as save_model_with_head
from .saving import save_through_transformers as save_through_transformers

__all__ = ["LoadPlan", "load_model_with_head", "load_model_from_parts", "load_model_with_heads", "load_base_model", "plan_loading", "plan_base_loading",
           "plan_heads_loading", "save_model_with_head", "save_through_transformers", "to_hugging_face", "read_head_files", "save_head_files"]
