"""DelayedEMA: the averaged weights are the EMA of the steps from the start step on; before it, the live weights."""

import lightning as L
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from expgen import DelayedEMA

pytestmark = pytest.mark.usefixtures("one_thread")


class Regression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class WeightRecorder(L.Callback):
    def __init__(self):
        self.weights = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append(pl_module.layer.weight.detach().clone())


def fit(ema, steps=5):
    torch.manual_seed(0)
    module, recorder = Regression(), WeightRecorder()
    x = torch.randn(steps, 3)
    data = torch.utils.data.DataLoader(list(zip(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]))), batch_size=1)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder, ema])
    trainer.fit(module, data)
    return module, recorder.weights


def test_the_average_starts_at_the_given_step():
    module, weights = fit(DelayedEMA(decay=0.5, update_starting_at_step=2))
    expected = 0.25 * weights[2] + 0.25 * weights[3] + 0.5 * weights[4]  # copy at step 2, then 0.5 avg + 0.5 new
    torch.testing.assert_close(module.layer.weight.detach(), expected)
    assert not torch.allclose(expected, weights[-1], atol=1e-4)


def test_a_run_that_ends_before_the_start_keeps_its_trained_weights():
    module, weights = fit(DelayedEMA(decay=0.5, update_starting_at_step=100))
    torch.testing.assert_close(module.layer.weight.detach(), weights[-1])


def test_validation_uses_the_average_only_once_it_is_updated():
    module = Regression()
    ema = DelayedEMA(decay=0.5)
    ema._average_model = AveragedModel(module)  # as setup("fit") makes it, not yet updated
    live = module.layer.weight.detach().clone()
    ema.on_validation_epoch_start(None, module)
    torch.testing.assert_close(module.layer.weight.detach(), live)
    ema.on_validation_epoch_end(None, module)
    ema._average_model.update_parameters(module)
    with torch.no_grad():
        module.layer.weight.add_(1.0)
    ema.on_validation_epoch_start(None, module)
    torch.testing.assert_close(module.layer.weight.detach(), live)  # the average (of the earlier weights)
    ema.on_validation_epoch_end(None, module)
    torch.testing.assert_close(module.layer.weight.detach(), live + 1.0)  # the live weights are back
