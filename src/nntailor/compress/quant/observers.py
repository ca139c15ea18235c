"""Calibration observers (scikit-learn's style: ``observe`` accumulates, ``range_()`` gives the fitted range).

- minmax: the extremes seen.
- moving_average: an exponential moving average of each batch's min and max (TF's QAT default, c = 0.01).
- percentile: the p-th / (100 - p)-th percentiles of the values seen (outliers clipped).
- mse: the clipping threshold that minimizes the squared quantization error of the values seen.
- kl: TensorRT's entropy calibration (Migacz, GTC 2017): the threshold whose quantized histogram is closest
  in KL divergence to the original.
Per-channel observers (weights) reduce over every axis but ``axis``.
"""

from __future__ import annotations

import numpy as np
import torch

from nntailor.compress.quant.arith import QSpec, fake_quant, qparams
from nntailor.errors import UserError

KINDS = ("minmax", "moving_average", "percentile", "mse", "kl")
MAX_SAMPLES = 1 << 20  # values kept for percentile/mse/kl: a uniform subsample beyond this


class Observer:
    def __init__(self, kind: str, spec: QSpec, *, percentile: float = 99.99, momentum: float = 0.01) -> None:
        if kind not in KINDS:
            raise UserError(f"unknown calibration {kind!r}; valid: {', '.join(KINDS)}")
        if spec.axis is not None and kind != "minmax":
            raise UserError(f"{kind} calibration is per tensor; per-channel ranges use minmax")
        self.kind, self.spec, self.percentile, self.momentum = kind, spec, percentile, momentum
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.samples: list[torch.Tensor] = []
        self.count = 0

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if x.numel() == 0:
            return
        if self.spec.axis is not None:
            if self.spec.axis >= x.dim():
                raise UserError(f"per-channel axis {self.spec.axis} does not exist for a {x.dim()}-D tensor")
            flat = x.transpose(0, self.spec.axis).reshape(x.shape[self.spec.axis], -1)
            lo, hi = flat.min(1).values, flat.max(1).values
        else:
            lo, hi = x.min(), x.max()
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        elif self.kind == "moving_average":
            self.lo = self.lo + self.momentum * (lo - self.lo)
            self.hi = self.hi + self.momentum * (hi - self.hi)
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
        if self.kind in ("percentile", "mse", "kl"):
            values = x.flatten()
            if values.numel() > MAX_SAMPLES // 8:
                values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(self.count))
                                [: MAX_SAMPLES // 8]]
            self.samples.append(values)
        self.count += 1

    def range_(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lo is None or self.hi is None:
            raise UserError("calibration saw no data: the calibration set is empty")
        if self.kind in ("minmax", "moving_average"):
            return self.lo, self.hi
        values = torch.cat(self.samples)
        if self.kind == "percentile":
            q = torch.tensor([100 - self.percentile, self.percentile]) / 100
            lo, hi = torch.quantile(values[: MAX_SAMPLES], q)
            return lo, hi
        threshold = self._mse(values) if self.kind == "mse" else self._kl(values)
        # the range clipped at +-threshold (the same rule the MSE search scores)
        return torch.clamp(self.lo, min=-threshold), torch.clamp(self.hi, max=threshold)

    def qparams_(self) -> tuple[torch.Tensor, torch.Tensor]:
        return qparams(*self.range_(), self.spec)

    def _mse(self, values: torch.Tensor) -> float:
        """Grid search of the clipping threshold in (0, max|x|] minimizing the squared error."""
        top = float(values.abs().max())
        best, best_err = top, float("inf")
        for fraction in np.linspace(0.05, 1.0, 96):
            t = top * fraction
            lo = max(float(self.lo), -t)
            hi = min(float(self.hi), t)
            scale, zp = qparams(torch.tensor(lo), torch.tensor(hi), self.spec)
            err = float(((fake_quant(values, scale, zp, self.spec) - values) ** 2).mean())
            if err < best_err:
                best, best_err = t, err
        return best

    def _kl(self, values: torch.Tensor, bins: int = 2048) -> float:
        """TensorRT entropy calibration over a histogram of |x| (Migacz 2017)."""
        magnitudes = values.abs().numpy()
        hist, edges = np.histogram(magnitudes, bins=bins, range=(0, float(magnitudes.max()) or 1.0))
        levels = 1 << (self.spec.bits - 1)  # quantization levels on one side of zero
        best, best_kl = bins, float("inf")
        for i in range(levels, bins + 1):
            p = hist[:i].astype(np.float64).copy()
            p[-1] += hist[i:].sum()  # clip the outliers into the last bin
            # quantize the first i bins into `levels` bins, then expand back over the non-empty bins
            chunks = np.array_split(hist[:i].astype(np.float64), levels)
            q = np.concatenate([
                np.where(c > 0, c.sum() / max((c > 0).sum(), 1), 0.0) for c in chunks
            ])
            if p.sum() == 0 or q.sum() == 0:
                continue
            p /= p.sum()
            q /= q.sum()
            mask = p > 0
            kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
            if kl < best_kl:
                best, best_kl = i, kl
        return float(edges[best])
