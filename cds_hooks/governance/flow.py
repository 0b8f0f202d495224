"""The pathway's flow diagram, drawn by Graphviz (`dot`, through the `graphviz` binding) as SVG.

Nodes and edges come from the rules: the services' hooks, the value sets behind each gate, the
red-flag silencing of the profile, each rule's orders, precedence (`unless`) and settings, and the
card's indicator. The gates' order is the evaluation's (see `scope`).
"""

from __future__ import annotations

import re
import textwrap

import graphviz

from cds_hooks.governance.scope import EXCLUSIONS, POPULATION, RED_FLAG, valuesets_of
from cds_hooks.governance.walk import selected_settings, words
from cds_hooks.pathway.rules import Rules

FILL = {"info": "#e3efff", "warning": "#fff1d6", "critical": "#ffe0e0"}
LINE = {"info": "#2b6cb0", "warning": "#b7791f", "critical": "#c53030"}
SILENT = "silent"


class DiagramError(Exception):
    """Graphviz could not draw the diagram (most often: `dot` is not installed)."""


def _node_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _label(*lines: str) -> str:
    """Lines for a node or edge label, each wrapped so the diagram stays narrow enough to read."""
    wrapped = [part for line in lines for part in textwrap.wrap(line, 34, subsequent_indent="  ") or [""]]
    return "\\n".join(line.replace("\\", "\\\\") for line in wrapped)


def flow_graph(rules: Rules, profile_id: str | None = None) -> graphviz.Digraph:
    profile_id = profile_id or rules.profile_id
    profile = rules.pathway.profiles[profile_id]
    scopes = rules.governance.rules
    g = graphviz.Digraph("pathway", graph_attr={"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11",
                                                "label": f"Profile {profile_id}: {profile.title}",
                                                "labelloc": "t"},
                         node_attr={"fontname": "Helvetica", "fontsize": "10"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    hooks = " / ".join(sorted({s.hook for s in rules.services.values()}))
    g.node("hooks", _label(hooks, "draft orders"), shape="box", style="rounded,filled", fillcolor="#eeeeee")
    g.node(SILENT, "No card", shape="ellipse", style="filled", fillcolor="#f5f5f5")
    excluded = valuesets_of(rules, *EXCLUSIONS)
    g.node("exclusion", _label("Prior lumbar surgery?", f"{len(excluded)} value sets"), shape="diamond")
    population = valuesets_of(rules, POPULATION)
    ages = profile.population
    g.node("population", _label(f"Age {ages.min_age_years or 0}" + (f"-{ages.max_age_years}" if ages.max_age_years
                                                                     is not None else "+") + ",",
                                "active back condition or order reason?",
                                f"{sum(len(v.codes) for v in population)} codes"), shape="diamond")
    flags = valuesets_of(rules, RED_FLAG)
    g.node("red_flags", _label("Red flag within its window?", f"{len(rules.pathway.red_flag_categories)} "
                               f"categories, {len(flags)} value sets"), shape="diamond")
    g.edge("hooks", "exclusion")
    g.edge("exclusion", SILENT, label="yes")
    g.edge("exclusion", "population", label="no")
    g.edge("population", SILENT, label="no")
    g.edge("population", "red_flags", label="yes")

    groups: dict[tuple[str, ...], list[str]] = {}
    for rule_id in rules.cards.rules:
        groups.setdefault(tuple(scopes[rule_id].orders), []).append(rule_id)  # type: ignore[index]
    flagged_to_silent = False
    for kinds, members in groups.items():
        group = "order_" + _node_id("_".join(kinds))
        sets = valuesets_of(rules, *kinds)
        g.node(group, _label("Order in", ", ".join(kinds) + "?", f"{len(sets)} value sets"), shape="diamond")
        g.edge("red_flags", group, label="no")
        loud = [r for r in members if r not in profile.red_flags_silence]
        if loud:
            g.edge("red_flags", group, label=f"yes: only {', '.join(loud)}", style="dashed")
        elif not flagged_to_silent:
            g.edge("red_flags", SILENT, label="yes")
            flagged_to_silent = True
        for rule_id in members:
            text = rules.cards.rule_text(profile_id, rule_id)
            scope = scopes[rule_id]  # type: ignore[index]
            settings = selected_settings(profile, scope.settings)
            lines = [rule_id, text.topic, f"[{text.indicator}]"]
            lines += [f"{path.split('.', 1)[-1]} = {words(v)}" for path, v in settings.items()]
            g.node(_node_id(rule_id), _label(*lines), shape="box", style="filled",
                   fillcolor=FILL[text.indicator], color=LINE[text.indicator])
            when = "no card from " + ", ".join(scope.unless) if scope.unless else "thresholds met"
            g.edge(group, _node_id(rule_id), label=when)
    return g


def flow_svg(rules: Rules, profile_id: str | None = None) -> str:
    """The diagram as an inline SVG element (no XML declaration or DOCTYPE)."""
    try:
        svg = flow_graph(rules, profile_id).pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise DiagramError("Graphviz `dot` is not installed (Debian: apt-get install graphviz)") from None
    except graphviz.CalledProcessError as exc:
        raise DiagramError(f"Graphviz failed: {exc}") from None
    return svg[svg.index("<svg"):]
