"""
Base models whose code ships with the checkpoint (``auto_map`` in ``config.json``, ``configuration_x.py`` and
``modeling_x.py``), loaded with ``trust_remote_code=True``.

Every checkpoint here is written without running its code: ``config.json`` by hand, the weights as random tensors of
the shapes the code builds. Each code file leaves a trace when imported (a file in the test's ``trace`` folder), so the
tests can tell whether any of it ran. Each test uses a ``model_type`` (and so module names) of its own, and checkpoint
folders named after it: transformers caches imported checkpoint code under the folder's name (4.36 never re-imports a
module of the same name), in ``HF_MODULES_CACHE``, which points into this run's temporary folder (set in conftest.py).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from archit.cli.inspection import CustomCode, inspect_checkpoint, render
from archit.cli.main import main as archit_command
from archit.cli.matrix_worker import fixed_inputs, run_probe
from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.configs import CombinedConfig
from archit.instantiation.heads import ExtractiveQAHeadConfig, TokenClassificationHeadConfig
from archit.instantiation.multihead import ModelWithHeads
from archit.instantiation.standardisation import read_standard_fields
from archit.instantiation.tasks import ForExtractiveQA, ForSingleLabelTokenClassification
from archit.loading import plan_loading

from tests.helpers import (
    assert_same_outputs,
    expected_era,
    read_checkpoint_tensors,
    read_json,
    roberta_config,
    save_transformers_model,
)

VOCAB, WIDTH, LAYERS, POSITIONS = 50, 16, 2, 32

CONFIGURATION = '''
import pathlib
pathlib.Path(r"{trace}", "configuration_{name}.imported").touch()  # The trace that this code ran.

from transformers import PretrainedConfig


class {prefix}Config(PretrainedConfig):
    model_type = "{name}"
    {attribute_map}
    def __init__(self, vocab_size=50, {width}=16, num_hidden_layers=2, max_position_embeddings=32,
                 hidden_dropout_prob=0.0, **kwargs):
        self.vocab_size = vocab_size
        self.{width} = {width}
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        super().__init__(**kwargs)
'''

MODELING = '''
import pathlib
pathlib.Path(r"{trace}", "modeling_{name}.imported").touch()  # The trace that this code ran.

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput

from .configuration_{name} import {prefix}Config


class {prefix}PreTrainedModel(PreTrainedModel):
    config_class = {prefix}Config
    base_model_prefix = "body"

    def _init_weights(self, module):  # torch.nn.init, which transformers 5.0 keeps off weights it loaded
        {data_init}
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class {prefix}Model({prefix}PreTrainedModel):
    """Embeddings, then per layer a residual tanh(linear) of each token plus the masked mean of its sequence."""

    def __init__(self, config):
        super().__init__(config)
        width = config.{width}
        self.embed = nn.Embedding(config.vocab_size, width)
        self.position = nn.Embedding(config.max_position_embeddings, width)
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(config.num_hidden_layers)])
        self.LayerNorm = nn.LayerNorm(width)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, value):
        self.embed = value

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=None, return_dict=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed(input_ids) + self.position(positions)[None]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        states = (hidden,)
        for layer in self.layers:
            context = (hidden * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
            hidden = hidden + torch.tanh(layer(hidden + context))
            states += (hidden,)
        hidden = self.LayerNorm(hidden)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=states if output_hidden_states else None)


class {prefix}ForTokenClassification({prefix}PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.body = {prefix}Model(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.{width}, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.body(input_ids, attention_mask=attention_mask).last_hidden_state
        return TokenClassifierOutput(logits=self.classifier(self.dropout(hidden)))
'''


def write_code_checkpoint(tmp_path: Path, name: str, width: str = "hidden_size", attribute_map: bool = False,
                          seed: int = 0, folder: Optional[Path] = None, legacy_norm: bool = False,
                          data_init: bool = False) -> Path:
    """``tmp_path / f"{name}_ckpt"``: a checkpoint of ``model_type`` ``name``, which transformers does not have, with
    its code (``configuration_{name}.py``, ``modeling_{name}.py``) and an ``auto_map`` for ``AutoConfig``, ``AutoModel``
    and ``AutoModelForTokenClassification``. ``width`` names the config's hidden size field (``attribute_map``:
    aliased to ``hidden_size``; ``legacy_norm``: the layer norm stored as ``gamma``/``beta``, as old checkpoints have it;
    ``data_init``: ``_init_weights`` writes ``.data`` directly, as much code on the hub does). None of its code runs here."""
    folder, trace = folder or tmp_path / f"{name}_ckpt", tmp_path / "trace"
    folder.mkdir(parents=True)
    trace.mkdir(exist_ok=True)
    prefix = name.title().replace("_", "")
    fields = dict(name=name, prefix=prefix, trace=trace, width=width,
                  attribute_map=f'attribute_map = {{"hidden_size": "{width}"}}\n' if attribute_map else "",
                  data_init="for p in module.parameters(recurse=False): p.data.normal_(std=0.02)\n        return"
                  if data_init else "")
    (folder / f"configuration_{name}.py").write_text(CONFIGURATION.format(**fields))
    (folder / f"modeling_{name}.py").write_text(MODELING.format(**fields))
    config = {"model_type": name, "architectures": [f"{prefix}Model"], "vocab_size": VOCAB, width: WIDTH,
              "num_hidden_layers": LAYERS, "max_position_embeddings": POSITIONS, "hidden_dropout_prob": 0.0,
              "auto_map": {"AutoConfig": f"configuration_{name}.{prefix}Config",
                           "AutoModel": f"modeling_{name}.{prefix}Model",
                           "AutoModelForTokenClassification": f"modeling_{name}.{prefix}ForTokenClassification"}}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(seed)

    def random(*shape):
        return torch.randn(*shape, generator=generator) * 0.3

    norm = ("gamma", "beta") if legacy_norm else ("weight", "bias")
    tensors = {"embed.weight": random(VOCAB, WIDTH), "position.weight": random(POSITIONS, WIDTH),
               f"LayerNorm.{norm[0]}": 1 + random(WIDTH), f"LayerNorm.{norm[1]}": random(WIDTH)}
    for i in range(LAYERS):
        tensors[f"layers.{i}.weight"] = random(WIDTH, WIDTH)
        tensors[f"layers.{i}.bias"] = random(WIDTH)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def assert_transformers_gives_the_same_logits(exported: Path, model) -> None:
    """The exported folder, loaded by plain transformers (with its code), gives ``model``'s logits."""
    reference = transformers.AutoModelForTokenClassification.from_pretrained(str(exported),
                                                                             trust_remote_code=True).eval()
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(reference(input_ids=input_ids, attention_mask=attention_mask).logits,
                            model(input_ids, attention_mask).logits)


def traces(tmp_path: Path) -> list:
    """The code files of the test's checkpoints that were imported."""
    return sorted(path.name for path in (tmp_path / "trace").iterdir())


def inputs():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB, (2, 7), generator=generator)
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[1, -3:] = 0
    return input_ids, attention_mask


def _forget_imported_code() -> None:
    """Drop imported checkpoint code from ``sys.modules``, so that the next load imports it again (or must not)."""
    for module in [name for name in sys.modules if name.split(".")[0] == "transformers_modules"]:
        del sys.modules[module]


# ---------------------------------------------------------------------------------------------------------------------
# Without trust_remote_code=True: refused, and none of the code runs.

def test_refused_without_trust_and_no_code_runs(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_refused")
    head_config = TokenClassificationHeadConfig(num_labels=3)
    attempts = {
        "AutoBaseModel": lambda **kw: AutoBaseModel.from_pretrained(str(folder), **kw),
        "task": lambda **kw: ForSingleLabelTokenClassification.from_pretrained(str(folder), AutoBaseModel,
                                                                               head_config, **kw),
        "ModelWithHeads": lambda **kw: ModelWithHeads.from_pretrained(
            str(folder), AutoBaseModel, {"ner": (ForSingleLabelTokenClassification, head_config)}, **kw),
        "plan": lambda **kw: plan_loading(ForSingleLabelTokenClassification, str(folder), AutoBaseModel, head_config,
                                          **kw),
        "CombinedConfig": lambda **kw: CombinedConfig.from_pretrained(str(folder), head_config, **kw),
    }
    for name, attempt in attempts.items():
        for kwargs in ({}, {"trust_remote_code": False}, {"trust_remote_code": None}):
            with pytest.raises(ValueError) as error:
                attempt(**kwargs)
            message = str(error.value)
            assert "trust_remote_code=True" in message, (name, message)
            assert "rc_refused" in message and "modeling_rc_refused.py" in message, (name, message)
    assert traces(tmp_path) == []
    assert not [name for name in sys.modules if name.endswith(".modeling_rc_refused")]

    # archit inspect describes it, and says why it plans nothing, without importing the code.
    description = inspect_checkpoint(str(folder))
    assert description.custom_code == CustomCode(files=("configuration_rc_refused.py", "modeling_rc_refused.py"),
                                                 auto_map=read_json(folder / "config.json")["auto_map"])
    assert "trust_remote_code=True" in description.plan_error
    assert "configuration_rc_refused.py, modeling_rc_refused.py" in render(description)
    assert traces(tmp_path) == []

    # The trace does show when the code runs.
    AutoBaseModel.from_pretrained(str(folder), trust_remote_code=True)
    assert traces(tmp_path) == ["configuration_rc_refused.imported", "modeling_rc_refused.imported"]


# ---------------------------------------------------------------------------------------------------------------------
# With trust_remote_code=True: the checkpoint's own classes, as transformers' AutoModel builds them.

def test_base_model_equals_transformers_automodel(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_states")
    model = AutoBaseModel.from_pretrained(str(folder), trust_remote_code=True)
    reference = transformers.AutoModel.from_pretrained(str(folder), trust_remote_code=True).eval()
    assert type(model.base_model).__name__ == type(reference).__name__ == "RcStatesModel"
    assert type(model.config).__name__ == "RcStatesConfig"
    stored = read_checkpoint_tensors(folder)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, stored[key]), key

    input_ids, attention_mask = inputs()
    with torch.no_grad():
        ours = model(input_ids, attention_mask, do_drop_intermediates=False)
        theirs = reference(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    assert_same_outputs(ours.last_hidden_state, theirs.last_hidden_state)
    assert_same_outputs(ours.hidden_states, theirs.hidden_states)

    # dtype and placement as for the built-in families.
    half = AutoBaseModel.from_pretrained(str(folder), trust_remote_code=True, dtype=torch.bfloat16, device_map="cpu")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    for key, tensor in half.base_model.state_dict().items():
        assert torch.equal(tensor, stored[key].to(torch.bfloat16)), key


def test_legacy_key_names_are_converted_as_transformers_converts_them(tmp_path):
    """The installed transformers' key conversion (5.x's registry, 4.x's renaming) applies to checkpoint code too."""
    folder = write_code_checkpoint(tmp_path, "rc_legacy", legacy_norm=True)
    model, info = AutoBaseModel.from_pretrained(str(folder), trust_remote_code=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    # 5.x: transformers' own conversion rules rename them, for this class as for its own; 4.x: archit's renaming.
    assert info["converted_keys"] == ({"_core.LayerNorm.weight": ["LayerNorm.gamma"],
                                       "_core.LayerNorm.bias": ["LayerNorm.beta"]} if expected_era() == "5.0" else {})
    reference = transformers.AutoModel.from_pretrained(str(folder), trust_remote_code=True).eval()
    stored = read_checkpoint_tensors(folder)
    assert torch.equal(model.base_model.LayerNorm.weight, stored["LayerNorm.gamma"])
    assert torch.equal(reference.LayerNorm.weight, stored["LayerNorm.gamma"])
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(model(input_ids, attention_mask).last_hidden_state,
                            reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)


def test_loaded_weights_stay_whatever_the_code_initialises(tmp_path):
    """Code whose ``_init_weights`` writes ``.data`` (transformers 5.0's own loader lets it overwrite loaded weights):
    archit initialises only what the checkpoint lacks, with the code's own initialisation."""
    folder = write_code_checkpoint(tmp_path, "rc_datainit", data_init=True)
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3), trust_remote_code=True)
    stored = read_checkpoint_tensors(folder)
    assert set(model.base_model.state_dict()) == set(stored)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, stored[key]), key
    assert model.head.dense.weight.device.type == "cpu"  # The head is initialised, not left on the meta device.


def test_hub_id_with_revision_and_cache_dir(tmp_path):
    """A hub id served from a hub cache (offline): the code and the weights of the revision asked for, from cache_dir."""
    cache = tmp_path / "hub"
    repository = cache / "models--archit-tests--rc_hub"
    for revision, commit, seed in (("main", "a" * 40, 0), ("v2", "b" * 40, 5)):
        folder = write_code_checkpoint(tmp_path, "rc_hub", seed=seed, folder=repository / "snapshots" / commit)
        with open(folder / "modeling_rc_hub.py", "a") as handle:
            handle.write(f"\nREVISION = {revision!r}\n")
        (repository / "refs").mkdir(exist_ok=True)
        (repository / "refs" / revision).write_text(commit)
    for revision, commit in (("main", "a" * 40), ("v2", "b" * 40)):
        model = AutoBaseModel.from_pretrained("archit-tests/rc_hub", trust_remote_code=True, cache_dir=str(cache),
                                              revision=revision, local_files_only=True)
        assert sys.modules[type(model.base_model).__module__].REVISION == revision
        stored = read_checkpoint_tensors(repository / "snapshots" / commit)
        assert torch.equal(model.base_model.embed.weight, stored["embed.weight"])
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoBaseModel.from_pretrained("archit-tests/rc_hub", cache_dir=str(cache), local_files_only=True)


def test_known_model_type_uses_transformers_classes_without_trust(tmp_path):
    """A checkpoint of a family transformers has, shipping code too: as AutoModel, transformers' own classes serve
    unless trust_remote_code=True, and the code is not imported. A checkpoint without code is unaffected by the flag."""
    folder = tmp_path / "rc_known_ckpt"
    save_transformers_model(transformers.RobertaModel, roberta_config(), folder)
    write_code_checkpoint(tmp_path, "rc_known", folder=tmp_path / "rc_known_code")
    for name in ("configuration_rc_known.py", "modeling_rc_known.py"):
        shutil.copy(tmp_path / "rc_known_code" / name, folder / name)
    config = read_json(folder / "config.json")
    config["auto_map"] = read_json(tmp_path / "rc_known_code" / "config.json")["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))
    model = AutoBaseModel.from_pretrained(str(folder))
    assert type(model.base_model) is transformers.RobertaModel
    assert traces(tmp_path) == []
    plain = tmp_path / "rc_known_plain"
    save_transformers_model(transformers.RobertaModel, roberta_config(), plain)
    assert type(AutoBaseModel.from_pretrained(str(plain), trust_remote_code=True).base_model) is transformers.RobertaModel
    assert traces(tmp_path) == []


def test_task_checkpoint_of_the_custom_code_is_imported_with_its_head(tmp_path):
    """A transformers task checkpoint saved by the custom code's own XForTokenClassification: archit imports its head."""
    folder = write_code_checkpoint(tmp_path, "rc_import")
    reference = transformers.AutoModelForTokenClassification.from_pretrained(str(folder), trust_remote_code=True,
                                                                             num_labels=3)
    with torch.no_grad():
        for p in reference.classifier.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    # As transformers' Auto classes do (4.49 and 4.50 forget it), so that save_pretrained copies the code.
    type(reference).register_for_auto_class("AutoModelForTokenClassification")
    reference.save_pretrained(str(tmp_path / "rc_import_task"))
    reference.eval()
    model = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path / "rc_import_task"), AutoBaseModel,
                                                              trust_remote_code=True).eval()
    assert model.config.head_config.num_labels == 3
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(model(input_ids, attention_mask).logits,
                            reference(input_ids=input_ids, attention_mask=attention_mask).logits)


# ---------------------------------------------------------------------------------------------------------------------
# Saving: the archit checkpoint carries the code, and reloads anywhere.

RELOAD_SCRIPT = """
import sys
import torch
from archit.instantiation.basemodels import AutoBaseModel
from archit.instantiation.tasks import ForSingleLabelTokenClassification

folder, inputs, out = sys.argv[1:]
input_ids, attention_mask = torch.load(inputs)
model = ForSingleLabelTokenClassification.from_pretrained(folder, AutoBaseModel, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(input_ids, attention_mask).logits
torch.save({"logits": logits, "class": type(model.base_model).__module__ + "." + type(model.base_model).__name__}, out)
"""


def test_saved_checkpoint_carries_the_code_and_reloads_in_a_new_process_elsewhere(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_saved")
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=4), trust_remote_code=True).eval()
    saved = tmp_path / "rc_saved_archit"
    model.save_pretrained(str(saved))
    assert {"configuration_rc_saved.py", "modeling_rc_saved.py"} <= {p.name for p in saved.iterdir()}
    for name in ("configuration_rc_saved.py", "modeling_rc_saved.py"):
        assert (saved / name).read_text() == (folder / name).read_text()
    stored = read_json(saved / "config.json")
    assert stored["base_model_config"]["auto_map"] == read_json(folder / "config.json")["auto_map"]
    assert stored["base_model_config"]["model_type"] == "rc_saved"
    combined = CombinedConfig.from_pretrained(str(saved), head_config_class=TokenClassificationHeadConfig,
                                              trust_remote_code=True)
    assert type(combined.base_model_config).__name__ == "RcSavedConfig" and combined.head_config.num_labels == 4

    # Copied to another place, without the original checkpoint next to it, in a process that never imported the code.
    moved = tmp_path / "elsewhere" / "rc_saved_moved"
    shutil.copytree(saved, moved)
    shutil.rmtree(folder)
    input_ids, attention_mask = inputs()
    torch.save((input_ids, attention_mask), tmp_path / "inputs.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules_of_subprocess"),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(moved), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = torch.load(tmp_path / "out.pt", weights_only=True)
    assert result["class"].startswith("transformers_modules.rc_saved_moved")  # the moved folder's copy of the code
    with torch.no_grad():
        assert_same_outputs(result["logits"], model(input_ids, attention_mask).logits)
    assert (tmp_path / "modules_of_subprocess").is_dir()


def test_multi_head_model_and_base_model_save_and_reload(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_heads")
    head_config = TokenClassificationHeadConfig(num_labels=2)
    model = ModelWithHeads.from_pretrained(str(folder), AutoBaseModel,
                                           {"ner": (ForSingleLabelTokenClassification, head_config)},
                                           trust_remote_code=True).eval()
    model.save_pretrained(str(tmp_path / "rc_heads_multi"))
    reloaded = ModelWithHeads.from_pretrained(str(tmp_path / "rc_heads_multi"), AutoBaseModel,
                                              trust_remote_code=True).eval()
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(reloaded(input_ids, attention_mask).logits["ner"],
                            model(input_ids, attention_mask).logits["ner"])

    base = model.model
    base.save_pretrained(str(tmp_path / "rc_heads_base"))
    assert (tmp_path / "rc_heads_base" / "modeling_rc_heads.py").is_file()
    again = AutoBaseModel.from_pretrained(str(tmp_path / "rc_heads_base"), trust_remote_code=True)
    with torch.no_grad():
        assert_same_outputs(again(input_ids, attention_mask).last_hidden_state,
                            base(input_ids, attention_mask).last_hidden_state)


# ---------------------------------------------------------------------------------------------------------------------
# toHuggingFace: the custom code's own task class, where it has one.

def test_to_hugging_face_builds_the_custom_task_class(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_export")
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3), trust_remote_code=True).eval()
    with torch.no_grad():
        model.head.dense.weight.normal_(generator=torch.Generator().manual_seed(3))
    exported = model.toHuggingFace()
    assert type(exported).__name__ == "RcExportForTokenClassification"
    exported.save_pretrained(str(tmp_path / "rc_export_hf"))
    assert_transformers_gives_the_same_logits(tmp_path / "rc_export_hf", model)

    qa = ForExtractiveQA.from_pretrained(str(folder), AutoBaseModel, ExtractiveQAHeadConfig(), trust_remote_code=True)
    with pytest.raises(NotImplementedError, match="names no AutoModelForQuestionAnswering class"):
        qa.toHuggingFace()



def test_archit_export_with_trust_remote_code(tmp_path, capsys):
    """`archit export` refuses a checkpoint of checkpoint code without --trust-remote-code (exit 2, naming the flag's
    keyword; no code imported) and with it writes the code's own task class, which plain transformers loads."""
    folder = write_code_checkpoint(tmp_path, "rc_cli_export")
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3), trust_remote_code=True).eval()
    saved = tmp_path / "archit_ckpt"
    model.save_pretrained(str(saved))
    _forget_imported_code()
    shutil.rmtree(tmp_path / "trace")
    (tmp_path / "trace").mkdir()

    assert archit_command(["export", str(saved), str(tmp_path / "refused")]) == 2
    assert "trust_remote_code=True" in capsys.readouterr().err
    assert traces(tmp_path) == [] and not (tmp_path / "refused").exists()

    assert archit_command(["export", str(saved), str(tmp_path / "hf"), "--trust-remote-code"]) == 0
    assert "RcCliExportForTokenClassification" in capsys.readouterr().out
    assert_transformers_gives_the_same_logits(tmp_path / "hf", model)


def test_matrix_worker_builds_checkpoint_code_only_when_the_probe_trusts_it(tmp_path):
    """`archit matrix --trust-remote-code` (a probe's "trust_remote_code"): the worker refuses without it, no code
    imported, and with it records the logits of the saved model, built from its code."""
    folder = write_code_checkpoint(tmp_path, "rc_matrix")
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3), trust_remote_code=True).eval()
    model.save_pretrained(str(tmp_path / "archit_ckpt"))
    _forget_imported_code()
    shutil.rmtree(tmp_path / "trace")
    (tmp_path / "trace").mkdir()
    probe = {"name": "rc", "checkpoint": str(tmp_path / "archit_ckpt"), "base": "AutoBaseModel",
             "task": "ForSingleLabelTokenClassification"}

    (tmp_path / "refused").mkdir()
    (tmp_path / "trusted").mkdir()
    refused = run_probe(probe, tmp_path / "refused", atol=1e-5)
    assert not refused["ok"] and "trust_remote_code=True" in refused["error"]
    assert traces(tmp_path) == []

    trusted = run_probe({**probe, "trust_remote_code": True}, tmp_path / "trusted", atol=1e-5)
    assert trusted["ok"], trusted["error"]
    stored = load_file(str(tmp_path / "trusted" / trusted["logits_file"]))
    with torch.no_grad():
        expected = model(**fixed_inputs(ForSingleLabelTokenClassification, VOCAB)).logits
    assert_same_outputs(stored["logits"], expected)


# ---------------------------------------------------------------------------------------------------------------------
# A config that names its hidden size otherwise.

def test_config_with_other_field_names(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_width", width="embed_width")
    head_config = TokenClassificationHeadConfig(num_labels=3)
    body = AutoBaseModel.from_pretrained(str(folder), trust_remote_code=True)  # The body alone needs no hidden size.
    with pytest.raises(ValueError) as error:
        ForSingleLabelTokenClassification.from_pretrained(str(folder), AutoBaseModel, head_config,
                                                          trust_remote_code=True)
    message = str(error.value)
    for part in ("RcWidthConfig", "hidden_size, d_model", "embed_width=16", 'attribute_map = {"hidden_size"',
                 "standardiseConfig()"):
        assert part in message, (part, message)

    class WidthBaseModel(AutoBaseModel):
        @classmethod
        def standardiseConfig(cls, raw_config):
            return read_standard_fields(raw_config, hidden_size=raw_config.embed_width)

    model = ForSingleLabelTokenClassification.from_pretrained(str(folder), WidthBaseModel, head_config,
                                                              trust_remote_code=True).eval()
    assert model.head.dense.in_features == WIDTH
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(model.model(input_ids, attention_mask).last_hidden_state,
                            body(input_ids, attention_mask).last_hidden_state)


def test_config_with_other_field_names_aliased_by_attribute_map(tmp_path):
    folder = write_code_checkpoint(tmp_path, "rc_alias", width="embed_width", attribute_map=True)
    model = ForSingleLabelTokenClassification.from_pretrained(
        str(folder), AutoBaseModel, TokenClassificationHeadConfig(num_labels=3), trust_remote_code=True).eval()
    assert model.head.dense.in_features == WIDTH
    model.save_pretrained(str(tmp_path / "rc_alias_archit"))
    reloaded = ForSingleLabelTokenClassification.from_pretrained(str(tmp_path / "rc_alias_archit"), AutoBaseModel,
                                                                 trust_remote_code=True).eval()
    input_ids, attention_mask = inputs()
    with torch.no_grad():
        assert_same_outputs(reloaded(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)


def test_config_of_checkpoint_code_made_elsewhere(tmp_path):
    """A config the caller got from transformers' AutoConfig (trusting the code there): AutoBaseModel does not import
    the model code on its own, says how to get it, and builds once the class is registered with transformers."""
    folder = write_code_checkpoint(tmp_path, "rc_elsewhere")
    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    assert traces(tmp_path) == ["configuration_rc_elsewhere.imported"]
    with pytest.raises(ValueError) as error:
        AutoBaseModel(config)
    assert "trust_remote_code=True" in str(error.value) and "AutoModel.register(RcElsewhereConfig" in str(error.value)
    assert traces(tmp_path) == ["configuration_rc_elsewhere.imported"]
    model_class = type(transformers.AutoModel.from_pretrained(str(folder), trust_remote_code=True))
    transformers.AutoModel.register(type(config), model_class, exist_ok=True)
    assert type(AutoBaseModel(config).base_model) is model_class
