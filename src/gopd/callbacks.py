"""Lightning callbacks: held-out evaluation at start, every N steps and at the end."""

from __future__ import annotations

import lightning as L


class Evaluation(L.Callback):
    def __init__(self, every_n_steps: int):
        self.every = max(int(every_n_steps), 0)

    def on_train_start(self, trainer, module) -> None:
        module.evaluate(module.batches, with_teacher=True)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every and module.batches % self.every == 0 and module.batches < trainer.max_steps:
            module.evaluate(module.batches)

    def on_train_end(self, trainer, module) -> None:
        module.evaluate(module.batches)
