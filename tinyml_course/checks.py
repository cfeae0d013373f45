"""Friendly checks for exercises: say what was expected, what came back, and a hint.

Each check prints one ``PASS`` line when it succeeds and raises :class:`CheckFailed`
(an ``AssertionError``, so nbgrader scores the cell 0) with a readable message when it
does not. Nothing is written to stderr.

    >>> check_value("bytes of 1e6 float32 params", 4_000_000, 4_000_000)
    PASS bytes of 1e6 float32 params
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """An exercise check failed; the message explains what to fix."""


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=12, edgeitems=3, precision=5)
    return repr(value)


def _fail(name: str, expected: Any, got: Any, hint: str) -> None:
    message = f"{name}: expected {_fmt(expected)}, got {_fmt(got)}."
    if hint:
        message += f" Hint: {hint}"
    raise CheckFailed(message)


def _not_done(name: str, got: Any) -> None:
    if got is None or got is Ellipsis:
        raise CheckFailed(
            f"{name}: got {got!r}. Write your answer in the cell above (replace the `raise NotImplementedError()` line) and run it."
        )


def passed(name: str) -> None:
    """Print the pass line."""
    print(f"PASS {name}")


def check_value(
    name: str, got: Any, expected: Any, *, hint: str = "", rtol: float = 1e-6, atol: float = 0.0
) -> None:
    """Check one number (or string/bool) against the expected value."""
    _not_done(name, got)
    if isinstance(expected, (int, float, np.integer, np.floating)) and not isinstance(
        expected, bool
    ):
        try:
            ok = bool(np.isclose(float(got), float(expected), rtol=rtol, atol=atol))
        except (TypeError, ValueError):
            ok = False
    else:
        ok = got == expected
    if not ok:
        _fail(name, expected, got, hint)
    passed(name)


def check_array(
    name: str,
    got: Any,
    expected: Any,
    *,
    hint: str = "",
    rtol: float = 1e-6,
    atol: float = 0.0,
    exact: bool = False,
) -> None:
    """Check an array's shape, then its values (exactly, or within tolerances)."""
    _not_done(name, got)
    got_arr, exp_arr = np.asarray(got), np.asarray(expected)
    if got_arr.shape != exp_arr.shape:
        raise CheckFailed(
            f"{name}: expected shape {exp_arr.shape}, got shape {got_arr.shape}."
            + (f" Hint: {hint}" if hint else "")
        )
    if exact:
        bad = np.flatnonzero(got_arr.reshape(-1) != exp_arr.reshape(-1))
    else:
        bad = np.flatnonzero(
            ~np.isclose(
                got_arr.astype(float).reshape(-1),
                exp_arr.astype(float).reshape(-1),
                rtol=rtol,
                atol=atol,
            )
        )
    if len(bad):
        i = int(bad[0])
        raise CheckFailed(
            f"{name}: {len(bad):,} of {exp_arr.size:,} values differ; first at flat index {i}: "
            f"expected {_fmt(exp_arr.reshape(-1)[i])}, got {_fmt(got_arr.reshape(-1)[i])}."
            + (f" Hint: {hint}" if hint else "")
        )
    passed(name)


def check_dtype(name: str, got: Any, dtype: Any, *, hint: str = "") -> None:
    """Check an array's dtype."""
    _not_done(name, got)
    if np.asarray(got).dtype != np.dtype(dtype):
        _fail(f"{name} dtype", np.dtype(dtype).name, np.asarray(got).dtype.name, hint)
    passed(f"{name} dtype")


def check_true(name: str, condition: bool, *, message: str, hint: str = "") -> None:
    """Check a condition; ``message`` says what was wrong when it is false."""
    if not condition:
        raise CheckFailed(f"{name}: {message}" + (f" Hint: {hint}" if hint else ""))
    passed(name)


def check_at_most(name: str, got: Any, limit: Any, *, hint: str = "") -> None:
    """Check ``got <= limit`` (a budget)."""
    _not_done(name, got)
    if not float(got) <= float(limit):
        raise CheckFailed(
            f"{name}: {_fmt(got)} is over the budget of {_fmt(limit)}."
            + (f" Hint: {hint}" if hint else "")
        )
    passed(name)


def check_at_least(name: str, got: Any, floor: Any, *, hint: str = "") -> None:
    """Check ``got >= floor`` (a target)."""
    _not_done(name, got)
    if not float(got) >= float(floor):
        raise CheckFailed(
            f"{name}: {_fmt(got)} is below the target of {_fmt(floor)}."
            + (f" Hint: {hint}" if hint else "")
        )
    passed(name)


def check_value_with_mistakes(
    name: str,
    got: Any,
    expected: Any,
    *,
    mistakes: dict[Any, str] | None = None,
    hint: str = "",
    rtol: float = 1e-6,
) -> None:
    """Check one number; when it equals a known wrong answer, name the mistake.

    Parameters
    ----------
    name : str
        What is checked (printed in the pass line and the failure message).
    got, expected : number
        The learner's value and the right one.
    mistakes : dict, optional
        Known wrong values mapped to the hint that explains each, e.g.
        ``{4_800: "did you forget the output channels?"}``.
    hint : str, optional
        The hint for any other wrong value.

    Raises
    ------
    CheckFailed
        If ``got`` is not ``expected`` (within ``rtol``).

    Examples
    --------
    >>> check_value_with_mistakes("MACs", 1_228_800, 1_228_800, mistakes={4_800: "output channels?"})
    PASS MACs
    """
    _not_done(name, got)
    try:
        ok = bool(np.isclose(float(got), float(expected), rtol=rtol, atol=0.0))
    except (TypeError, ValueError):
        _fail(name, expected, got, f"return a number, not a {type(got).__name__}.")
    if not ok:
        for wrong, why in (mistakes or {}).items():
            try:
                if np.isclose(float(got), float(wrong), rtol=rtol, atol=0.0):
                    _fail(name, expected, got, why)
            except (TypeError, ValueError):
                continue
        _fail(name, expected, got, hint)
    passed(name)


# --------------------------------------------------------------------------- hidden tests
HIDDEN_MIME = "application/vnd.tinyml-course.hidden+json"


def encode_value(value: Any) -> Any:
    """A JSON-safe form of a result: numbers, strings, bools, None, lists, dicts, arrays.

    Arrays become ``{"array": nested list, "dtype": str, "shape": list}``; numpy scalars
    become Python numbers; tuples become lists; dict keys become strings.

    Raises
    ------
    TypeError
        For anything else (a model, a function): record a number or an array computed from it.

    Examples
    --------
    >>> encode_value((1, np.int64(2), np.array([0.5])))
    [1, 2, {'array': [0.5], 'dtype': 'float64', 'shape': [1]}]
    """
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [encode_value(v) for v in value.tolist()]
        return {"array": value.tolist(), "dtype": value.dtype.name, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    raise TypeError(
        f"a hidden-test result must be a number, string, bool, None, list, dict or array; "
        f"got {type(value).__name__}. Record a value computed from it instead."
    )


def hidden(
    name: str,
    value: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    at_most: float | None = None,
    at_least: float | None = None,
) -> None:
    """Record one result of a hidden test; the grader decides it, outside the student's kernel.

    In a hidden test, compute the student's result on an input the student has not seen and
    hand it to ``hidden``. Nothing is decided here (code in the student's kernel could patch
    any check): the grader compares the value with the one the solution recorded under the
    same name, with the solution's tolerances, or against the solution's bounds
    (``at_most`` / ``at_least``, for budgets where any value within them is right).

    Parameters
    ----------
    name : str
        Unique within the test cell.
    value : number, str, bool, list, dict or array
        The student's result (see :func:`encode_value`).
    rtol, atol : float
        Tolerances for numbers and arrays (taken from the solution's call).
    at_most, at_least : float, optional
        Bounds: the value passes when it lies within them, whatever the solution's value.
    """
    payload = {
        "name": str(name),
        "value": encode_value(value),
        "rtol": float(rtol),
        "atol": float(atol),
        "at_most": None if at_most is None else float(at_most),
        "at_least": None if at_least is None else float(at_least),
    }
    try:
        from IPython import get_ipython
        from IPython.display import publish_display_data
    except ImportError:  # pragma: no cover - IPython is a course dependency
        return
    if get_ipython() is None:  # plain Python (a script, a doctest): nothing to report to
        return
    publish_display_data({HIDDEN_MIME: payload, "text/plain": f"hidden test result: {name}"})
