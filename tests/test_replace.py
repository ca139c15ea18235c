"""MobileBERT's replacements: LayerNorm -> NoNorm, GELU -> ReLU, priced cheaper by the cost model."""

import torch
import torch.nn as nn

from nntailor import analyze
from nntailor.compress import NoNorm, ReplaceConfig, apply


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(32)
        self.fc = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.out = nn.Linear(64, 32)

    def forward(self, x):
        return x + self.out(self.act(self.fc(self.ln(x))))


def test_replacements_keep_shapes_and_parameters_and_cut_other_ops():
    torch.manual_seed(0)
    block = Block()
    with torch.no_grad():
        block.ln.weight.uniform_(0.5, 1.5)
    before = analyze(block, (1, 16, 32), "stm32l476").totals
    gamma = block.ln.weight.detach().clone()
    apply(block, ReplaceConfig())
    assert isinstance(block.ln, NoNorm) and isinstance(block.act, nn.ReLU)
    assert torch.equal(block.ln.weight.detach(), gamma)  # starts from the LayerNorm's gamma
    x = torch.randn(1, 16, 32)
    assert torch.allclose(block.ln(x), x * gamma + block.ln.bias)
    after = analyze(block, (1, 16, 32), "stm32l476").totals
    assert after["params"] == before["params"] and after["macs"] == before["macs"]
    # LayerNorm 5 -> NoNorm 1 per element (16 x 32); GELU 4 -> ReLU 1 per element (16 x 64), fused into fc
    assert after["other_ops"] < before["other_ops"]
    assert after["latency_s"] < before["latency_s"]
