"""Sends events with the Python SDK to a platform behind a Kubernetes Ingress.

The SDK is pointed at http://<ingress host>:<port>; the host name resolves to the node
(CAIRN_INGRESS_ADDR's address) through a resolver override in this process, as a DNS record would
for a user. Reads CAIRN_CAPTURE_URL, CAIRN_INGRESS_ADDR, CAIRN_API_KEY, CAIRN_EVENT, CAIRN_EVENTS.
Exits non-zero if the SDK reported any error.
"""

import os
import socket
import sys
from urllib.parse import urlparse

from cairn_analytics import Client

capture = os.environ["CAIRN_CAPTURE_URL"]
node_ip = os.environ["CAIRN_INGRESS_ADDR"].split(":")[0]
host = urlparse(capture).hostname
_getaddrinfo = socket.getaddrinfo


def getaddrinfo(name, *args, **kwargs):
    return _getaddrinfo(node_ip if name == host else name, *args, **kwargs)


socket.getaddrinfo = getaddrinfo

errors = []
client = Client(
    os.environ["CAIRN_API_KEY"],
    host=capture,
    flush_interval=0.1,
    on_error=lambda error, batch: errors.append(f"{error} ({len(batch)} events)"),
)
event = os.environ["CAIRN_EVENT"]
n = int(os.environ.get("CAIRN_EVENTS", "20"))
for i in range(n):
    client.capture("python-user", event, {"i": i, "sdk": "python"})
client.shutdown()
if errors:
    print("SDK errors:", "; ".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"python SDK delivered {n} {event} events to {capture}")
