"""``archit.instantiation.mixins``: a module inside the base model that is a ``StatefulLossMixin`` adds loss terms to the
task loss (once per forward, reset after), and reports them to a ``LoggingState`` when one is registered. The expected
values are computed in the test from the module's own output, captured independently with a forward hook."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from archit.instantiation.heads import TokenClassificationHeadConfig
from archit.instantiation.mixins import LoggingState, LossState, StatefulLossMixin
from archit.instantiation.tasks import ForSingleLabelTokenClassification

from tests.helpers import ARCHS, assert_close, make_inputs

COEFFICIENT = 0.3


def _regularised_linear(linear: torch.nn.Linear):
    class RegularisedLinear(torch.nn.Linear, StatefulLossMixin):
        """A linear layer that adds the mean square of its output to the loss."""

        def __init__(self, original: torch.nn.Linear):
            torch.nn.Linear.__init__(self, original.in_features, original.out_features)
            StatefulLossMixin.__init__(self)
            self.load_state_dict(original.state_dict())

        def forward(self, x):
            y = super().forward(x)
            self.addToLoss("activation_l2", y.pow(2).mean(), coefficient=COEFFICIENT)
            return y

    return RegularisedLinear(linear)


def _model_with_regulariser():
    arch = ARCHS["roberta"]
    torch.manual_seed(0)
    base = arch.base_class(arch.make_config())
    layer = base.base_model.encoder.layer[0].output
    layer.dense = _regularised_linear(layer.dense)
    base.activateCoreLoss()  # The module was put in after the base model was built.
    model = ForSingleLabelTokenClassification.fromModelAndHeadConfig(base, TokenClassificationHeadConfig(num_labels=3))
    captured = []
    layer.dense.register_forward_hook(lambda module, args, output: captured.append(output.detach()))
    return model.eval(), layer.dense, captured


def test_stateful_loss_is_added_once_per_forward():
    model, _, captured = _model_with_regulariser()
    input_ids, attention_mask = make_inputs()
    labels = torch.randint(0, 3, input_ids.shape, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # The term is reset after each forward: no accumulation across calls.
        captured.clear()
        out = model(input_ids, attention_mask, labels=labels)
        term = COEFFICIENT * captured[0].pow(2).mean()
        assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, 3), labels.reshape(-1)) + term)
    captured.clear()
    assert_close(model(input_ids, attention_mask).loss, COEFFICIENT * captured[0].pow(2).mean())  # No labels.


def test_stateful_loss_gradient_reaches_its_module():
    model, module, captured = _model_with_regulariser()
    input_ids, attention_mask = make_inputs()
    model(input_ids, attention_mask).loss.backward()
    assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_reported_terms_reach_a_logging_state():
    model, module, captured = _model_with_regulariser()
    state = LoggingState(SimpleNamespace(gradient_accumulation_steps=1))
    module.registerLog(state)
    input_ids, attention_mask = make_inputs()
    for _ in range(2):
        model(input_ids, attention_mask)
    expected = torch.stack([c.pow(2).mean() for c in captured]).mean().item()
    assert abs(state.compute()["activation_l2"] - expected) < 1e-6
    assert state.compute() == {}  # Reset after computing.


def test_term_without_a_name_is_refused_and_not_added():
    """addToLoss checks report_as before it adds anything: after the error, the loss holds only the earlier terms."""
    module = _regularised_linear(torch.nn.Linear(4, 4))
    state = LossState()
    module.registerLoss(state)
    module.addToLoss("kept", torch.tensor(2.0))
    for report_as in ("", None):
        with pytest.raises(ValueError, match="report_as"):
            module.addToLoss(report_as, torch.tensor(5.0))
    assert_close(state.compute(), torch.tensor(2.0))
