"""JUnit XML reports, which every CI system shows as test results (``--junit FILE``).

The document is ``<testsuites>`` with one ``<testsuite>``: for ``gradcam compare`` one ``<testcase>`` per pair
of explanations (its class name the input, its name the method, layer and class slot), one per explanation the
candidate lacks, one per mean bound; for ``gradcam evaluate`` one per (method, layer) and judged metric. A case
below its bound carries a ``<failure>`` whose message is the measured value and the bound. The attributes are
those the JUnit schemas CI systems read require (Jenkins' xunit ``junit-10.xsd``, Ant's schema as Windyroad
publishes it): counts on the suite, a name, class name and time on each case.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UsageError
from ..output.files import write_bytes_atomic
from .verdict import Bound, Failure

FAILURE_TYPE, MISSING_TYPE = "below-bound", "missing"


def _suite(name: str, seconds: float) -> ET.Element:
    return ET.Element(
        "testsuite",
        {
            "name": name,
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname() or "localhost",
            "time": f"{seconds:.3f}",
        },
    )


def _case(suite: ET.Element, classname: str, name: str, output: str = "") -> ET.Element:
    case = ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": "0"})
    if output:
        ET.SubElement(case, "system-out").text = output
    return case


def _fail(case: ET.Element, message: str, kind: str = FAILURE_TYPE, detail: str = "") -> None:
    """A failure, before the case's output (the order Ant's schema requires)."""
    failure = ET.Element("failure", {"message": message, "type": kind})
    failure.text = detail or message
    case.insert(0, failure)


def _document(suite: ET.Element) -> bytes:
    cases = suite.findall("testcase")
    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(1 for c in cases if c.find("failure") is not None)),
        "errors": "0",
        "skipped": str(sum(1 for c in cases if c.find("skipped") is not None)),
    }
    suite.attrib.update(counts)
    root = ET.Element("testsuites", {"name": suite.get("name"), "time": suite.get("time"), **counts})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _metrics_text(values: dict) -> str:
    return " ".join(f"{k}={'-' if v is None else f'{v:.6g}'}" for k, v in values.items())


def compare_junit(result, seconds: float = 0.0) -> bytes:
    """``gradcam compare``'s verdict as JUnit XML."""
    from .metrics import METRICS

    suite = _suite("gradcam compare", seconds)
    for pair in sorted(result.pairs, key=lambda p: (p.input, p.method, p.layer, p.slot)):
        case = _case(
            suite,
            pair.input,
            f"{pair.method} {pair.layer} {pair.slot}",
            _metrics_text({m: pair.metrics.get(m) for m in METRICS}),
        )
        if pair.failures:
            _fail(case, "; ".join(map(str, pair.failures)))
    for item in result.unpaired:
        case = _case(suite, item.input, f"{item.method} {item.layer} {item.slot}")
        if item.role == "baseline" and result.judged:
            _fail(case, f"missing in the candidate ({item.reason})", MISSING_TYPE)
        else:
            case.insert(0, ET.Element("skipped", {"message": f"only in the {item.role} ({item.reason})"}))
    means = result.means()
    failed = {f.bound: f for f in result.mean_failures}
    for bound in result.mean_bounds:
        case = _case(
            suite, "mean", bound.name, f"mean {bound.name} over {len(result.pairs)} pairs: {means.get(bound.metric)}"
        )
        if bound in failed:
            _fail(case, f"mean {failed[bound]}")
    return _document(suite)


def evaluate_junit(summaries: Sequence[dict], bounds: Sequence[Bound], seconds: float = 0.0) -> bytes:
    """``gradcam evaluate``'s verdict as JUnit XML: a case per (method, layer) and judged metric."""
    from .verdict import judge

    suite = _suite("gradcam evaluate", seconds)
    for summary in summaries:
        failures: dict[Bound, Failure] = {f.bound: f for f in judge(summary, bounds)}
        for bound in bounds:
            value = summary.get(bound.metric)
            value = value.get(bound.at) if isinstance(value, dict) else value
            case = _case(suite, f"{summary['method']}.{summary['layer']}", bound.name, f"{bound.name}={value}")
            if bound in failures:
                _fail(case, str(failures[bound]))
    return _document(suite)


def write_junit(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        write_bytes_atomic(path, data)
    except OSError as err:
        raise UsageError(f"--junit {path}: cannot write ({err.strerror or err})") from None
