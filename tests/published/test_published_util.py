"""Port of the published ArchIt's ``tst/test_util.py`` (github.com/bauwenst/ArchIt, release v2026.04.01, commit
acd05bb5ab82d185ae9d435ab0f94ac0e82e1b0a; the file is identical at HEAD cba77a4ced401f080ca2348189b3f35f0b75b40e).

What changed, and nothing else:
- The one function is named ``tst_deserialiseHeadConfig`` in the original, a name pytest does not collect (the
  original never ran under pytest); here it is ``test_deserialiseHeadConfig`` so that it runs. Its body is unchanged.
It has no assertion in the original (it only prints); it passes when nothing raises. No checkpoint, tokenizer or
device is involved.
"""
from archit.instantiation.heads import DependencyParsingHeadConfig
from archit.util import dataclass_from_dict


def test_deserialiseHeadConfig():
    head_config_on_disk = {'extended_model_config': {'layer_pooling': 1, 'stride': 256, 'word_pooling': '3'}, 'final_hidden_size_arcs': 500, 'final_hidden_size_relations': 100, 'head_dropout': 0.33, 'num_labels': 50, 'standardisation_exponent': 0}

    print(DependencyParsingHeadConfig(**head_config_on_disk))  # <-- Not recursive
    print(dataclass_from_dict(DependencyParsingHeadConfig, head_config_on_disk))  # <-- Recursive + Enum support
