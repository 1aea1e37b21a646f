"""Example graphexec gate plugin: softplus, SiLU (swish) and GELU (tanh approximation).

The gates reach graphexec through the ``graphexec.gates`` entry points in ``pyproject.toml``;
importing this package is never needed to use them from a graph file.
"""

from graphexec_example_gates.gates import GELU, SiLU, Softplus

__all__ = ["GELU", "SiLU", "Softplus"]
__version__ = "0.1.0"
