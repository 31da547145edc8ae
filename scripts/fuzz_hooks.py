"""Schemathesis hooks for `make fuzz` (scripts/fuzz.sh loads this file via SCHEMATHESIS_HOOKS).

One guard: the fuzzer may revoke any key it created itself (`POST /keys` -> `DELETE /keys/{id}`),
but never a key that existed when the run started. Those ids are 1..SHORTLINE_FUZZ_KEEP_KEYS_UPTO
(ids are a sequence and the run's own key is the last one created before it starts); revoking the
fuzz key itself would turn the rest of the run into 401s, revoking the stack's admin key would lock
its owner out. A protected id is replaced, just before the request is sent, by one no key can
have, so the call still goes out and is checked (a 404).
"""

import os

import schemathesis

KEEP_UPTO = int(os.environ.get("SHORTLINE_FUZZ_KEEP_KEYS_UPTO", "0"))
# Far above any id a sequence reaches in a test stack, and a valid int64 (the 404 of an absent key).
ABSENT_KEY_ID = 9_000_000_000_000_000_000


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.method.upper() != "DELETE" or case.operation.path != "/keys/{id}":
        return
    params = case.path_parameters or {}
    raw = params.get("id")
    try:
        key_id = int(str(raw))
    except (TypeError, ValueError):
        return
    if 0 < key_id <= KEEP_UPTO:
        params["id"] = ABSENT_KEY_ID
        case.path_parameters = params
