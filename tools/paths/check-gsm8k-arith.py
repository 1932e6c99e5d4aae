#!/usr/bin/env python3
"""A checker for GSM8K-style answers: reads an answer on stdin and exits 0
when it ends in a "#### <number>" line and every calculator annotation
<<expression=value>> in it is arithmetically right, 1 otherwise.

It needs no reference answer, so the daemon can use it as a task's
"confidence" command checker (a cascade escalates when it fails; GPT-4's
answers, which lack the final line, are not put to it), and the RouteLLM
converter uses the same function to record a `check` column for replay.
"""
import ast
import operator
import re
import sys

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow,
        ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def _value(node):
    """Evaluates + - * / ** % // on numbers only; anything else raises."""
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.operand))
    raise ValueError("not arithmetic")


def passes(answer):
    if not re.search(r"^#### *-?[0-9][0-9,]*(\.[0-9]+)?\s*$", answer,
                     re.MULTILINE):
        return False
    for expr, val in re.findall(r"<<([^=<>]+)=([^<>]+)>>", answer):
        try:
            got = _value(ast.parse(expr.replace("^", "**"), mode="eval"))
            want = float(val.replace(",", ""))
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError,
                TypeError):
            continue  # not a plain calculation: nothing to verify
        if abs(got - want) > 1e-6 * max(1.0, abs(want)):
            return False
    return True


if __name__ == "__main__":
    sys.exit(0 if passes(sys.stdin.read()) else 1)
