"""The last line of `make fuzz` from Schemathesis' JSON report (scripts/fuzz.sh).

    python3 scripts/fuzz_summary.py REPORT.json SCHEMATHESIS_EXIT_CODE

Prints each failure kind with its operations, then
`fuzz: <n> cases, <e> server errors, <v> schema violations`: server errors are the failures of
the not_a_server_error check (ST101, ST102), schema violations every other failure (an answer,
or an accepted or refused request, that the OpenAPI document does not describe). Exits 0 only
when both are 0, Schemathesis met no error and itself exited 0.
"""

import json
import sys

SERVER_ERROR_CODES = {"ST101", "ST102"}


def main() -> int:
    path, st_exit = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    cases = report["test_cases"]["generated"]
    server_errors = violations = 0
    for failure in report.get("failures", []):
        count = int(failure.get("count", 0))
        if failure.get("code") in SERVER_ERROR_CODES:
            server_errors += count
        else:
            violations += count
        ops = ", ".join(failure.get("operations", []))
        print(f"fuzz: {failure.get('code')} {failure.get('title')}: {count} ({ops})")
    errors = report.get("errors", [])
    for error in errors:
        print(f"fuzz: error: {json.dumps(error)[:300]}")
    if report["operations"].get("errored"):
        print(f"fuzz: {report['operations']['errored']} operations errored")
    print(f"fuzz: seed {report.get('seed')}, {report['running_time']:.0f} s")
    print(f"fuzz: {cases} cases, {server_errors} server errors, {violations} schema violations")
    ok = server_errors == 0 and violations == 0 and not errors and st_exit == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
