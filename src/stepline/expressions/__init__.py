"""CEL expressions with Inngest's semantics: filters, keys, and wait/cancel matchers.

Expressions are compiled once, when a function is defined (:func:`compile_expression`). Missing
fields evaluate as null instead of failing, and a boolean filter that errors is simply false.
Matchers for ``wait_for_event`` and ``cancel_on`` are prepared per run (:func:`prepare_match`)
with the run's own event substituted, and carry index keys so an incoming event is checked only
against candidate waits.
"""

from stepline.expressions._compile import (
    Expression,
    ExpressionEvaluationError,
    compile_condition,
    compile_expression,
)
from stepline.expressions._match import (
    MatchExpression,
    forget_matchers,
    index_decides,
    load_match,
    match_shorthand,
    prepare_match,
    stored_matches,
    string_holders,
    value_at,
    values_at,
)

__all__ = [
    "Expression",
    "ExpressionEvaluationError",
    "MatchExpression",
    "compile_condition",
    "compile_expression",
    "forget_matchers",
    "index_decides",
    "load_match",
    "match_shorthand",
    "prepare_match",
    "stored_matches",
    "string_holders",
    "value_at",
    "values_at",
]
