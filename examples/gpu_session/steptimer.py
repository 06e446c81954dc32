"""Probe callback for examples/gpu_session/run.sh: time steps [start, start + count), write the
rate (steps/s) to ``out`` and stop the run, so the real run can be sized to a time budget."""

import sys
import time

import lightning.pytorch as pl


class StepTimer(pl.Callback):
    def __init__(self, start: int = 60, count: int = 300, out: str = "rate.txt") -> None:
        self.start, self.count, self.out, self.t0 = start, count, out, None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self.start:
            self.t0 = time.time()
        elif self.t0 is not None and step == self.start + self.count:
            rate = self.count / (time.time() - self.t0)
            print(f"STEPRATE {rate:.2f} steps/s", file=sys.stderr, flush=True)
            with open(self.out, "w") as f:
                f.write(f"{rate}\n")
            trainer.should_stop = True
