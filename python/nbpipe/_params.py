"""Parameters → the typed JSON that ``nbpipe --parameters-json`` reads.

Values are converted the way papermill's Python translator sees them, so the injected cell is
the one papermill would write: ``None``, ``str``, ``bool``, ``int`` (any size), ``float``
(including NaN and ±inf, as ``json`` writes them), ``dict`` and ``list`` keep their type;
dict keys become ``str(key)``; anything else (tuples, dates, Decimals...) becomes ``str(value)``,
papermill's "last resort". Nothing is ever rendered as YAML text.
"""

import json

__all__ = ["to_json"]


def _convert(value, depth=0):
    if depth > 500:
        raise ValueError("parameters are nested too deeply")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _convert(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, depth + 1) for v in value]
    return str(value)


def to_json(parameters):
    """The JSON text of a parameters mapping (top-level names must be strings)."""
    if not isinstance(parameters, dict):
        try:
            parameters = dict(parameters)
        except (TypeError, ValueError):
            raise TypeError(
                "parameters must be a dict of names to values, got %s" % type(parameters).__name__
            ) from None
    for name in parameters:
        if not isinstance(name, str):
            raise TypeError("parameter names must be strings, got %r" % (name,))
    converted = {name: _convert(v) for name, v in parameters.items()}
    # allow_nan writes NaN/Infinity/-Infinity, which the binary reads back exactly.
    return json.dumps(converted, allow_nan=True, ensure_ascii=False)


