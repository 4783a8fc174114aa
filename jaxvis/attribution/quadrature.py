"""Quadrature nodes and weights for the integrated-gradients path integral.

The nodes are Captum's (``captum.attr._utils.approximation_methods``), so jaxvis and Captum
evaluate the gradient at the same points: ``riemann_left``, ``riemann_right``,
``riemann_middle`` and ``gausslegendre`` agree with Captum exactly.

``riemann_trapezoid`` differs on purpose: Captum places ``n`` nodes on ``linspace(0, 1, n)``
but gives them the weights ``[1/2n, 1/n, ..., 1/n, 1/2n]``, which sum to ``(n-1)/n`` (0.98 at
50 steps), so its integral is 2% short. jaxvis uses the same nodes with the correct trapezoid
weights ``[1/2(n-1), 1/(n-1), ..., 1/2(n-1)]``, which sum to one. To reproduce Captum's number,
multiply a jaxvis trapezoid result by ``(n-1)/n``.

Example::

    alphas, weights = nodes("gausslegendre", 50)   # both float64 arrays of shape (50,)
    float(weights.sum())                           # 1.0
"""

from __future__ import annotations

import numpy as np

from jaxvis._checks import check_positive_int

__all__ = ["METHODS", "nodes"]

METHODS = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def check_method(method: object, steps: object) -> tuple[str, int]:
    """Validate ``method`` and ``steps``; returns them normalised."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    steps = check_positive_int(steps, "steps")
    if method == "riemann_trapezoid" and steps < 2:
        raise ValueError("steps must be >= 2 for riemann_trapezoid (it uses both end points)")
    return method, steps


def nodes(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of ``method`` with ``steps`` nodes on ``[0, 1]``.

    ``sum(weights * f(alphas))`` approximates ``integral_0^1 f(a) da``.

    Example::

        a, w = nodes("riemann_middle", 4)   # a = [0.125, 0.375, 0.625, 0.875], w = 0.25 each
    """
    method, n = check_method(method, steps)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1.0 + x), 0.5 * w
    w = np.full(n, 1.0 / n)
    if method == "riemann_left":
        a = np.linspace(0.0, 1.0 - 1.0 / n, n)
    elif method == "riemann_right":
        a = np.linspace(1.0 / n, 1.0, n)
    elif method == "riemann_middle":
        a = np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)
    else:  # correct trapezoid rule on linspace(0, 1, n)
        a = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
    return a, w
