"""Write the fixtures of families whose checkpoints transformers 5.x converts on load:
``tests/data/converted/tf<major.minor>/``.

- ``transformers/`` (written under transformers 4.57 only, the last release before the conversions): checkpoints saved
  by transformers itself, in the 4.x layout, with the outputs 4.57 computed for fixed input ids:
    - ``mixtral_base``: a tiny ``MixtralModel`` (experts stored one by one: ``block_sparse_moe.experts.E.w1.weight``;
      5.x fuses them into ``mlp.experts.gate_up_proj``); ``outputs.pt`` holds its last hidden state;
    - ``gpt_neox_causal_lm``: a tiny ``GPTNeoXForCausalLM`` with an untied output matrix ``embed_out`` (``lm_head``
      from 5.14); ``outputs.pt`` holds its logits.
- ``archit/`` (written under every version to cover, 4.57 and the newest 5.x): archit's ``save_pretrained`` of a token
  classifier on the Mixtral base and of a causal LM on GPT-NeoX (its head imported), both loaded from the checkpoints
  above, with the logits this version computed.

``tests/test_converted_families.py`` loads all of them on whatever release runs the tests. Usage, once per
transformers version (4.57 first: the archit fixtures are made from its transformers checkpoints), commit the output:
    HF_HUB_OFFLINE=1 python tests/data/make_converted_fixtures.py
"""
import shutil
import sys
from pathlib import Path

import torch
import transformers
from packaging.version import Version

from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.tasks import ForCausalLM, ForSingleLabelTokenClassification

TESTS_DIR = Path(__file__).resolve().parents[1]
OUT_ROOT = TESTS_DIR / "data" / "converted"
TRANSFORMERS_ERA_DIR = OUT_ROOT / "tf4.57" / "transformers"
INPUT_IDS = torch.tensor([[1, 5, 17, 42, 98, 3, 7, 64], [2, 9, 33, 61, 80, 11, 0, 0]])
ATTENTION_MASK = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])


def mixtral_config() -> transformers.PretrainedConfig:
    return transformers.MixtralConfig(
        vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
        attn_implementation="eager")


def gpt_neox_config() -> transformers.PretrainedConfig:
    return transformers.GPTNeoXConfig(
        vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, tie_word_embeddings=False, attn_implementation="eager")


def _build(model_class: type, config: transformers.PretrainedConfig, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _randomise(model_class(config), seed)


@torch.no_grad()
def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights far from initialisation (std 0.2 matrices, noisy norms), so that routing and every expert
    matter and a tensor loaded into the wrong place shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        scale = 0.2 if parameter.dim() > 1 else 0.05
        parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.float().eval()


def _save_with_outputs(model: torch.nn.Module, folder: Path, output: str) -> None:
    """``model.save_pretrained(folder)`` plus ``outputs.pt``: the inputs and the model's ``output`` on them."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(str(folder))
    with torch.no_grad():
        value = getattr(model(input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK), output)
    torch.save({"input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, output: value,
                "transformers_version": transformers.__version__}, str(folder / "outputs.pt"))
    print(f"wrote {folder}")


def write_transformers_checkpoints() -> None:
    """4.57's own checkpoints in the 4.x layout, with its outputs."""
    _save_with_outputs(_build(transformers.MixtralModel, mixtral_config(), seed=0),
                       TRANSFORMERS_ERA_DIR / "mixtral_base", "last_hidden_state")
    _save_with_outputs(_build(transformers.GPTNeoXForCausalLM, gpt_neox_config(), seed=1),
                       TRANSFORMERS_ERA_DIR / "gpt_neox_causal_lm", "logits")


def write_archit_checkpoints(out_dir: Path) -> None:
    """archit models loaded from 4.57's checkpoints on the installed release, saved by archit."""
    cases = {
        "mixtral_token_classification": lambda: ForSingleLabelTokenClassification.from_pretrained(
            str(TRANSFORMERS_ERA_DIR / "mixtral_base"), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3),
            attn_implementation="eager"),
        "gpt_neox_causal_lm": lambda: ForCausalLM.from_pretrained(
            str(TRANSFORMERS_ERA_DIR / "gpt_neox_causal_lm"), AutoBaseModel, attn_implementation="eager"),
    }
    for name, load in cases.items():
        torch.manual_seed(0)
        model = load()
        _randomise(model.head, seed=2)
        _save_with_outputs(model, out_dir / name, "logits")


def main() -> None:
    version = Version(transformers.__version__)
    if (version.major, version.minor) == (4, 57):
        write_transformers_checkpoints()
    elif not TRANSFORMERS_ERA_DIR.is_dir():
        sys.exit(f"{TRANSFORMERS_ERA_DIR} is missing: run this script under transformers 4.57 first.")
    write_archit_checkpoints(OUT_ROOT / f"tf{version.major}.{version.minor}" / "archit")


if __name__ == "__main__":
    main()
