"""The ``archit`` command (also ``python -m archit``), over the published API: ``archit inspect`` says what a checkpoint
is and what ``from_pretrained`` would do with it, from ``config.json`` and the weight files' headers; ``archit export``
writes an archit checkpoint as its transformers equivalent."""
