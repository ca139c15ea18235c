"""Test-session settings."""

import os

import torch

# Under pytest-xdist every worker is a process: with torch's default threads per process the two workers
# oversubscribe the cores, and the many small Hessian-vector products of the tests run ~10x slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
