"""Learning-rate schedules: the learning rate as a function of the epoch (PyTorch's formulas).

A schedule is a pure function of the epoch once it knows the base rate::

    opt = optim.SGD(lr=0.1, momentum=0.9)
    sched = StepLR(30, gamma=0.1).attach(opt)   # base_lr = opt.lr (0.1)
    sched(45)                                  # -> 0.01, sets nothing
    for epoch in range(epochs):
        train_one_epoch(...)
        sched.step()                           # epoch += 1 and opt.lr = sched(epoch)

``base_lr=`` can be given instead of attaching (then ``step()`` only returns the rate).
Epochs count from 0; ``sched(0) == base_lr``.
"""

from __future__ import annotations

import math

__all__ = ["Schedule", "StepLR", "ExponentialLR", "CosineAnnealingLR"]


class Schedule:
    """Base class: ``__call__(epoch) -> lr``, ``attach(optimizer)``, ``step()``, state for checkpoints."""

    def __init__(self, base_lr: float | None = None):
        self.base_lr = None if base_lr is None else float(base_lr)
        self.optimizer = None
        self.epoch = 0

    def attach(self, optimizer) -> Schedule:
        """Drive ``optimizer.lr``; the base rate becomes the optimizer's current one unless given."""
        self.optimizer = optimizer
        if self.base_lr is None:
            self.base_lr = float(optimizer.lr)
        return self

    def __call__(self, epoch: int) -> float:
        if self.base_lr is None:
            raise ValueError(f"{type(self).__name__}: no base learning rate; pass base_lr= or attach(optimizer) first")
        if epoch < 0:
            raise ValueError(f"{type(self).__name__}: epoch must be >= 0, received {epoch}")
        return self._lr(int(epoch))

    def _lr(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch; set the attached optimizer's ``lr``; return the new rate."""
        self.epoch += 1
        lr = self(self.epoch)
        if self.optimizer is not None:
            self.optimizer.lr = lr
        return lr

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, d: dict) -> None:
        self.epoch = int(d["epoch"])
        self.base_lr = None if d["base_lr"] is None else float(d["base_lr"])


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, step_size: int, gamma: float = 0.1, base_lr: float | None = None):
        super().__init__(base_lr)
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, received {step_size!r}")
        self.step_size = step_size
        self.gamma = float(gamma)

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, gamma: float, base_lr: float | None = None):
        super().__init__(base_lr)
        self.gamma = float(gamma)

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(Schedule):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (SGDR without
    restarts, Loshchilov & Hutter, 2017); periodic in ``epoch`` with period ``2 T_max``, as the
    closed form of PyTorch's ``CosineAnnealingLR``."""

    def __init__(self, T_max: int, eta_min: float = 0.0, base_lr: float | None = None):
        super().__init__(base_lr)
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, received {T_max!r}")
        self.T_max = T_max
        self.eta_min = float(eta_min)

    def _lr(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
