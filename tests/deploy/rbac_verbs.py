# SPDX-License-Identifier: Apache-2.0
"""How the API server authorizes a request: (API group, resource, verb).
Shared by k8s_test.py (the overlay's ClusterRole against the driver's
calls, as docs/kubernetes.md lists them) and tests/dra/dra_test.py (against
the calls the driver really made)."""


def rbac_verb(method, path):
    """(group, resource, verb) that the API server authorizes a call as."""
    parts = path.split("?")[0].strip("/").split("/")
    group = parts[1] if parts[0] == "apis" else ""
    rest = parts[3:] if parts[0] == "apis" else parts[2:]
    if rest[0] == "namespaces":
        rest = rest[2:]
    resource, named = rest[0], len(rest) > 1
    verb = {"GET": "get" if named else "list", "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete" if named else "deletecollection"}[method]
    return group, resource, verb
