"""Read infra/template.yaml in tests: a YAML loader that keeps CloudFormation's short
tags (!Ref, !Sub, !GetAtt, ...) as their long forms, and a renderer that resolves the
few intrinsics the policies and tables use with given parameter values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "infra" / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader plus ``!Tag value`` -> ``{"Ref": value}`` / ``{"Fn::Tag": value}``."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    doc = yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(doc, dict)
    return doc


_VAR = re.compile(r"\$\{([^}]*)\}")


def render(node: Any, values: dict[str, str]) -> Any:
    """Resolve Ref and Sub (and GetAtt, as ``Logical.Attr``) with ``values``; a name that is
    not in ``values`` raises KeyError, so nothing unresolved passes silently."""
    if isinstance(node, list):
        return [render(v, values) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return values[node["Ref"]]
    if set(node) == {"Fn::GetAtt"}:
        return values[".".join(node["Fn::GetAtt"])]
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        assert isinstance(text, str), "only the one-argument form of !Sub is supported"

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            return "${" + name[1:] + "}" if name.startswith("!") else values[name]

        return _VAR.sub(one, text)
    assert not any(k.startswith("Fn::") for k in node), f"unsupported intrinsic in {node}"
    return {k: render(v, values) for k, v in node.items()}
