"""Schemathesis hooks for roller's tests (tests/it/openapi_tools.rs): every request
Hawk-signed as the test's client, and no generated request that could make roller
touch anything outside this machine.

Roller checks a Hawk MAC over the method, host, port and resource (path and query
exactly as sent), a timestamp within 15 minutes and a nonce it has not seen before.
So the signature is made on the request as it goes out: a `requests` auth object sees
the prepared request with its URL already encoded, and mohawk draws a fresh nonce
for every request. The credentials come from the environment.
"""

import ipaddress
import os

import mohawk
import requests
import schemathesis

CREDENTIALS = {
    "id": os.environ["ROLLER_HAWK_ID"],
    "key": os.environ["ROLLER_HAWK_KEY"],
    "algorithm": "sha256",
}


class Hawk(requests.auth.AuthBase):
    def __call__(self, r):
        # Roller ignores the payload hash (its API takes no bodies): none is sent.
        sender = mohawk.Sender(
            CREDENTIALS, r.url, r.method, content=None, content_type=None, always_hash_content=False
        )
        r.headers["Authorization"] = sender.request_header
        return r


schemathesis.auth.set_from_requests(Hawk())


def outside(worker_id):
    """A worker id that is an address off this machine: roller pings an IP literal as
    given (a name goes to the test's DNS server, which is a dead loopback port)."""
    try:
        return not ipaddress.ip_address(str(worker_id)).is_loopback
    except ValueError:
        return False


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    return not outside((path_parameters or {}).get("worker_id", ""))


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # The filter covers generated data; this covers every phase, and stops the run
    # rather than let a job reach another host.
    worker_id = (case.path_parameters or {}).get("worker_id", "")
    assert not outside(worker_id), f"refusing to send a request for worker {worker_id!r}"


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """One refusal of schema-valid input is roller's rule, not a mismatch: a task that
    restarts a machine, asked for a worker id the inventory does not describe, is a 400
    with error_code `not_in_inventory` (the document says so; nothing the schema of a
    path parameter could express). Every other failure stands."""
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        code = response.json().get("error_code")
    except Exception:
        return True
    return code != "not_in_inventory"
