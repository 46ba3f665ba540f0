"""Just enough PromQL reading to check that dashboards and alerts query metrics that exist.

Not a parser: it removes what cannot be a metric name (strings, label matchers, ranges, grouping
clauses, function calls, keywords, numbers) and returns the identifiers left, which in PromQL can
only be metric names. Label matchers are returned per metric so their label names can be checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

from connector.metrics import Metrics

#: Series Prometheus itself attaches to every scrape target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
#: Labels Prometheus (and a ServiceMonitor) add to every scraped series, and histograms' `le`.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "service", "endpoint", "le"})

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
    | {"inf", "nan", "atan2", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w])")
_NUMBER_SUFFIX = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?\b", re.IGNORECASE)


@dataclass
class Query:
    metrics: set[str] = field(default_factory=set)
    #: (metric, label) pairs used in selectors; metric is None for a bare `{…}` selector.
    matched_labels: set[tuple[str | None, str]] = field(default_factory=set)
    #: Labels named in by/without/on/ignoring clauses.
    grouping_labels: set[str] = field(default_factory=set)


def read(expr: str) -> Query:
    """The metric names and label names one PromQL expression refers to."""
    _check_balanced(expr)
    query = Query()
    for metric, body in _SELECTOR.findall(expr):
        for label, _op, _value in _MATCHER.findall(body):
            query.matched_labels.add((metric or None, label))
        leftover = _MATCHER.sub("", body).replace(",", "").strip()
        assert not leftover, f"cannot read label matchers {body!r} in {expr!r}"
    for clause in _GROUPING.findall(expr):
        inner = clause[clause.index("(") + 1 : -1]
        query.grouping_labels.update(label.strip() for label in inner.split(",") if label.strip())

    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER_SUFFIX.sub(" ", text)
    for match in _IDENT.finditer(text):
        name = match.group(1)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        query.metrics.add(name)
    return query


def _check_balanced(expr: str) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {expr!r}"
    assert not stack, f"unclosed {stack[-1]!r} in {expr!r}"


def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name `connector.metrics.Metrics` exposes, with its label names.

    Names come from the registry (counters get `_total`, histograms `_bucket`, `_sum`, `_count`,
    as prometheus-client exposes them); label names from the metric objects themselves, since a
    labelled metric with no children yet has no samples to read them from.
    """
    metrics = Metrics()
    labels_by_family = {
        collector._name: frozenset(collector._labelnames)
        for collector in vars(metrics).values()
        if isinstance(collector, MetricWrapperBase)
    }
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        labels = labels_by_family.get(family.name, frozenset())
        for suffix in suffixes.get(family.type, ("",)):
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series
