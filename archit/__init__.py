"""archit: task heads on top of any Hugging Face transformers base model (``archit.instantiation``), and class code for
models modified in place (``archit.declaration``)."""
__version__ = "2026.11.0"
