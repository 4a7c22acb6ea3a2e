"""Reads a Prometheus text exposition from stdin and prints it as JSON, parsed by the
Prometheus project's own Python client (prometheus_client.parser), not by SyncRoot's code:
[{"family": name, "type": type, "samples": [{"name", "labels", "value"}]}].

The black-box metrics test (tests/it/metrics.rs) feeds it each role's /metrics; a text the
parser refuses makes this exit non-zero with the parser's error.
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        samples = []
        for s in family.samples:
            value = s.value
            if math.isinf(value) or math.isnan(value):
                value = str(value)
            samples.append({"name": s.name, "labels": s.labels, "value": value})
        families.append({"family": family.name, "type": family.type, "samples": samples})
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
