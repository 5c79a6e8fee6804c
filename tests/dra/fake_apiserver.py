#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A loopback HTTPS stand-in for the Kubernetes API server, for the DRA
plugin's tests (issue 15; the calls are those of /dra-contract: GET a
ResourceClaim; list, create, update and delete ResourceSlices).

It answers like the real API server does for those calls: bearer-token
authentication (401 Status otherwise), Status objects for errors (kind
Status, apiVersion v1, status Failure, reason, code, details), uid,
creationTimestamp, generation and resourceVersion set on create, the
resourceVersion bumped on every write (one counter, as etcd's revision),
409 Conflict for a PUT or DELETE precondition with a stale resourceVersion,
409 AlreadyExists for a second create, 404 NotFound, lists as
ResourceSliceList (items without kind/apiVersion, as the real server sends
them) with fieldSelector on metadata.name, spec.nodeName, spec.driver,
spec.pool.name honoured (any other field: 400, as the real server).

It records every request (`requests`) and every write (`writes`: method,
path, body, code) and keeps the current slices (`slices()`); every body
written can be checked against the Kubernetes schema of its kind with
tests/deploy/validate.mjs (`validate_writes(npm_dir)`).

Imported (the test runs it in a thread):
    srv = FakeApiServer(dir).start()      # certs + token in dir
    srv.add_claim(allocated_claim("ns", "c", "dma.physpool.io", "node1",
                                  [("mem", "numa0", "1Gi")]))
    ... run the plugin with --kube-api=srv.url --kube-ca-file=srv.ca_file
        --kube-token-file=srv.token_file ...
    srv.slices(); srv.writes; srv.assert_writes_valid(npm_dir); srv.stop()

Standalone (claims from DIR/claims/*.json, re-read when they change;
writes appended to DIR/writes.jsonl; current slices in DIR/slices/):
    fake_apiserver.py --dir DIR [--port 0]     prints the port, serves
    fake_apiserver.py --dir DIR --validate NPM_DIR   checks DIR/writes.jsonl
"""
import argparse
import copy
import datetime
import glob
import http.server
import json
import os
import random
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import uuid

GROUP = "resource.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP}/{VERSION}"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VALIDATOR = os.path.join(os.path.dirname(HERE), "deploy", "validate.mjs")

# Field selectors the real server accepts for resourceslices
# (pkg/registry/resource/resourceslice/strategy.go: ToSelectableFields).
SLICE_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: "",
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
    "spec.driver": lambda o: o.get("spec", {}).get("driver", ""),
}
CLAIM_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- certificates ------------------------------------------------------------

def _openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {out.stderr}")


def make_certs(directory, force=False, ca_name="fake-kube-ca"):
    """CA (ca.crt, ca.key) and a server certificate (server.crt, server.key)
    for 127.0.0.1, ::1 and localhost, made with the openssl CLI in
    `directory`; existing files are kept unless `force`. Returns the CA path."""
    os.makedirs(directory, exist_ok=True)
    names = ["ca.crt", "ca.key", "server.crt", "server.key"]
    if not force and all(os.path.exists(os.path.join(directory, n)) for n in names):
        return os.path.join(directory, "ca.crt")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3",
             "-subj", f"/CN={ca_name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=directory)
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "3",
             "-extfile", "server.ext", cwd=directory)
    for n in ["server.csr", "server.ext", "ca.srl"]:
        try:
            os.unlink(os.path.join(directory, n))
        except FileNotFoundError:
            pass
    return os.path.join(directory, "ca.crt")


# --- objects -------------------------------------------------------------------

def status(code, reason, message, name=None, kind=None, uid=None):
    """A metav1.Status as the real server sends it for an error."""
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if name is not None or kind is not None:
        s["details"] = {"name": name, "group": GROUP, "kind": kind}
        if uid:
            s["details"]["uid"] = uid
    return s


def allocated_claim(namespace, name, driver, pool, results, config=None, uid=None,
                    node=None, reserved_for=None):
    """A resource.k8s.io/v1 ResourceClaim allocated on `pool` (the node):
    `results` is a list of (request, device, consumed memory or None);
    `config` the opaque parameters (a dict, e.g. {"apiVersion":
    "dma.physpool.io/v1", "kind": "DmaConfig", "alignment": "2Mi"}) or a
    list of full DeviceAllocationConfiguration entries."""
    requests = []
    res = []
    for request, device, memory in results:
        if request not in [r["name"] for r in requests]:
            exact = {"deviceClassName": driver, "allocationMode": "ExactCount", "count": 1}
            if memory is not None:
                exact["capacity"] = {"requests": {"memory": memory}}
            requests.append({"name": request, "exactly": exact})
        r = {"request": request, "driver": driver, "pool": pool, "device": device}
        if memory is not None:
            r["consumedCapacity"] = {"memory": memory}
            r["shareID"] = str(uuid.uuid4())
        res.append(r)
    devices = {"results": res}
    if isinstance(config, dict):
        devices["config"] = [{"source": "FromClaim", "opaque": {"driver": driver,
                                                                "parameters": config}}]
    elif config:
        devices["config"] = config
    node = node or pool
    claim = {
        "apiVersion": API_VERSION, "kind": "ResourceClaim",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"devices": {"requests": requests}},
        "status": {"allocation": {
            "devices": devices,
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node]}]}]},
            "allocationTimestamp": now()}},
    }
    if isinstance(config, dict):
        claim["spec"]["devices"]["config"] = [{"opaque": {"driver": driver,
                                                          "parameters": config}}]
    if uid:
        claim["metadata"]["uid"] = uid
    if reserved_for is not None:
        claim["status"]["reservedFor"] = reserved_for
    return claim


def parse_selector(text, fields, what):
    """[(field, op, value)] of a fieldSelector; ValueError for the 400."""
    out = []
    if not text:
        return out
    for term in text.split(","):
        m = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term)
        if not m:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in fields:
            raise ValueError(f'field label not supported: {field}')
        out.append((field, "!=" if op == "!=" else "=", value))
    return out


def matches(obj, selector, fields):
    for field, op, value in selector:
        got = fields[field](obj)
        if (got == value) != (op == "="):
            return False
    return True


def parse_label_selector(text):
    out = []
    if not text:
        return out
    for term in text.split(","):
        m = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term)
        if m:
            out.append((m.group(1).strip(), "!=" if m.group(2) == "!=" else "=",
                        m.group(3).strip()))
        elif term.startswith("!"):
            out.append((term[1:].strip(), "!exists", None))
        else:
            out.append((term.strip(), "exists", None))
    return out


def labels_match(obj, selector):
    labels = obj["metadata"].get("labels") or {}
    for key, op, value in selector:
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CIDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")


def slice_problems(obj):
    """Some of the real server's validation of a ResourceSlice (the 422s the
    plugin can hit); the schema itself is checked by validate.mjs."""
    errs = []
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    if name and (len(name) > 253 or not _NAME.fullmatch(name)):
        errs.append(f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain "
                    "must consist of lower case alphanumeric characters, '-' or '.'")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs + ["spec: Required value"]
    if not spec.get("driver"):
        errs.append("spec.driver: Required value")
    elif len(spec["driver"]) > 63 or not _NAME.fullmatch(spec["driver"]):
        errs.append(f"spec.driver: Invalid value: \"{spec['driver']}\"")
    pool = spec.get("pool") or {}
    if not pool.get("name"):
        errs.append("spec.pool.name: Required value")
    if not isinstance(pool.get("generation"), int) or pool.get("generation") < 0:
        errs.append("spec.pool.generation: Invalid value: must be greater than or equal to 0")
    if not isinstance(pool.get("resourceSliceCount"), int) or pool.get("resourceSliceCount") < 1:
        errs.append("spec.pool.resourceSliceCount: Invalid value: must be greater than zero")
    chosen = [k for k in ["nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection"]
              if spec.get(k)]
    if len(chosen) != 1:
        errs.append("spec: Invalid value: exactly one of `nodeName`, `nodeSelector`, "
                    "`allNodes`, `perDeviceNodeSelection` is required")
    devices = spec.get("devices") or []
    if len(devices) > 128:
        errs.append(f"spec.devices: Too many: {len(devices)}: must have at most 128 items")
    seen = set()
    for i, d in enumerate(devices):
        p = f"spec.devices[{i}]"
        dn = d.get("name", "")
        if not dn:
            errs.append(f"{p}.name: Required value")
        elif len(dn) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", dn):
            errs.append(f"{p}.name: Invalid value: \"{dn}\": a lowercase RFC 1123 label")
        if dn in seen:
            errs.append(f"{p}.name: Duplicate value: \"{dn}\"")
        seen.add(dn)
        attrs = d.get("attributes") or {}
        caps = d.get("capacity") or {}
        if len(attrs) + len(caps) > 32:
            errs.append(f"{p}: Too many: attributes and capacities must have at most 32 items")
        for k, v in attrs.items():
            local = k.split("/", 1)[-1]
            if len(local) > 32 or not _CIDENT.fullmatch(local):
                errs.append(f"{p}.attributes[{k}]: Invalid value: a C identifier of at most "
                            "32 characters")
            if "/" in k:
                domain = k.split("/", 1)[0]
                if len(domain) > 63 or not _NAME.fullmatch(domain):
                    errs.append(f"{p}.attributes[{k}]: Invalid value: the domain must be a "
                                "DNS subdomain of at most 63 characters")
            if isinstance(v, dict) and isinstance(v.get("string"), str) and \
                    len(v["string"]) > 64:
                errs.append(f"{p}.attributes[{k}].string: Too long: may not be more than 64 "
                            "bytes")
            if not isinstance(v, dict) or len([x for x in v if v[x] is not None]) != 1:
                errs.append(f"{p}.attributes[{k}]: Invalid value: exactly one value must be "
                            "specified")
        for k, v in caps.items():
            local = k.split("/", 1)[-1]
            if len(local) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", local):
                errs.append(f"{p}.capacity[{k}]: Invalid value: a DNS label")
            qs = [("value", v.get("value"))]
            rp = v.get("requestPolicy") or {}
            qs.append(("requestPolicy.default", rp.get("default")))
            vr = rp.get("validRange") or {}
            for f in ["min", "max", "step"]:
                qs.append((f"requestPolicy.validRange.{f}", vr.get(f)))
            for f, q in qs:
                if q is not None and not (isinstance(q, str) and _QUANTITY.fullmatch(q)):
                    errs.append(f"{p}.capacity[{k}].{f}: Invalid value: {q!r}: quantities "
                                "must match the regular expression")
            if rp.get("validRange") and rp.get("validValues"):
                errs.append(f"{p}.capacity[{k}].requestPolicy: Invalid value: only one of "
                            "validRange and validValues")
    return errs


# --- the server --------------------------------------------------------------

class FakeApiServer:
    """The stand-in. Thread-safe; `lock` guards the state."""

    def __init__(self, directory, host="127.0.0.1", port=0, token=None, record_dir=False):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca_file = make_certs(self.dir)
        self.token_file = os.path.join(self.dir, "token")
        if token is None and os.path.exists(self.token_file):
            with open(self.token_file) as f:
                token = f.read().strip()
        self.tokens = {token or secrets.token_urlsafe(32)}
        self.token = next(iter(self.tokens))
        self._write_token(self.token)
        self.host, self.port = host, port
        self.record_dir = record_dir
        self.lock = threading.RLock()
        self.rv = 1000
        self.claims = {}        # (ns, name) -> object
        self.nodes = {}         # name -> Node
        self._slices = {}       # name -> object
        self.requests = []      # {method, path, query, headers}
        self.writes = []        # {method, path, body, code, response}
        self.faults = []        # see inject()
        self._claim_files = {}  # path -> (mtime, (ns, name))
        self._uids = {}         # (ns, name) -> uid for claims read from files
        self.httpd = None
        self.thread = None

    # -- control ---------------------------------------------------------------
    def _write_token(self, token):
        tmp = self.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(token)
        os.replace(tmp, self.token_file)

    def rotate_token(self, keep_old=True):
        """A new token in the token file (a projected token's rotation);
        the old one stays valid unless keep_old is False. Returns it."""
        with self.lock:
            new = secrets.token_urlsafe(32)
            if not keep_old:
                self.tokens.clear()
            self.tokens.add(new)
            self.token = new
            self._write_token(new)
            return new

    def _next_rv(self):
        self.rv += 1
        return str(self.rv)

    def add_claim(self, claim):
        """Stores a ResourceClaim (a copy) as a create would: uid,
        creationTimestamp, resourceVersion set unless given. Returns it."""
        with self.lock:
            c = copy.deepcopy(claim)
            c.setdefault("apiVersion", API_VERSION)
            c.setdefault("kind", "ResourceClaim")
            m = c.setdefault("metadata", {})
            m.setdefault("namespace", "default")
            key = (m["namespace"], m["name"])
            m.setdefault("uid", self._uids.get(key) or str(uuid.uuid4()))
            m.setdefault("creationTimestamp", now())
            m["resourceVersion"] = self._next_rv()
            self.claims[key] = c
            return copy.deepcopy(c)

    update_claim = add_claim

    def add_node(self, name):
        """A v1 Node (what GET /api/v1/nodes/{name} answers). Returns it."""
        with self.lock:
            n = {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": name, "uid": str(uuid.uuid4()),
                              "creationTimestamp": now(),
                              "resourceVersion": self._next_rv()}}
            self.nodes[name] = n
            return copy.deepcopy(n)

    def claim(self, namespace, name):
        with self.lock:
            c = self.claims.get((namespace, name))
            return copy.deepcopy(c) if c else None

    def delete_claim(self, namespace, name):
        with self.lock:
            return self.claims.pop((namespace, name), None) is not None

    def slices(self):
        """{name: ResourceSlice} as stored now."""
        with self.lock:
            return copy.deepcopy(self._slices)

    def put_slice(self, obj):
        """Stores a ResourceSlice directly (e.g. a stale one from an earlier
        run of the plugin, which its cleanup must find)."""
        with self.lock:
            s = copy.deepcopy(obj)
            s.setdefault("apiVersion", API_VERSION)
            s.setdefault("kind", "ResourceSlice")
            m = s.setdefault("metadata", {})
            m.setdefault("uid", str(uuid.uuid4()))
            m.setdefault("creationTimestamp", now())
            m.setdefault("generation", 1)
            m["resourceVersion"] = self._next_rv()
            self._slices[m["name"]] = s
            self._save_slice(s)
            return copy.deepcopy(s)

    def inject(self, method, path_regex, code, reason=None, message="injected fault",
               times=1, delay=0.0):
        """The next `times` requests (None: all) whose method and path match
        get a Status error `code` (0: no error, only the delay) after
        `delay` seconds, without touching the state."""
        with self.lock:
            self.faults.append({"method": method, "re": re.compile(path_regex), "code": code,
                                "reason": reason or http.HTTPStatus(code).phrase.replace(" ", "")
                                if code else None,
                                "message": message, "times": times, "delay": delay})

    def clear(self):
        """Forgets the recorded requests and writes (not the state)."""
        with self.lock:
            self.requests.clear()
            self.writes.clear()

    def slice_writes(self, method=None):
        with self.lock:
            return [copy.deepcopy(w) for w in self.writes
                    if "/resourceslices" in w["path"] and (method is None or w["method"] == method)]

    def written_objects(self):
        """Every object body the plugin sent in a POST or PUT (also those
        refused), with kind/apiVersion defaulted from the URL if absent,
        as the server does when it decodes them."""
        out = []
        with self.lock:
            for w in self.writes:
                if w["method"] in ("POST", "PUT") and isinstance(w["body"], dict):
                    o = copy.deepcopy(w["body"])
                    if "/resourceslices" in w["path"]:
                        o.setdefault("apiVersion", API_VERSION)
                        o.setdefault("kind", "ResourceSlice")
                    out.append(o)
        return out

    def validate_writes(self, npm_dir, include_claims=False, validator=None):
        """(exit code, output) of validate.mjs over written_objects() (and the
        claims the test put in, if include_claims)."""
        objs = self.written_objects()
        if include_claims:
            with self.lock:
                objs += [copy.deepcopy(c) for c in self.claims.values()]
        return validate_objects(objs, npm_dir, validator)

    def assert_writes_valid(self, npm_dir, **kw):
        code, out = self.validate_writes(npm_dir, **kw)
        if code != 0:
            raise AssertionError("objects written to the API server do not validate:\n" + out)
        return out

    # -- running ---------------------------------------------------------------
    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    def start(self):
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = http.server.ThreadingHTTPServer((self.host, self.port), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.dir, "server.crt"),
                            os.path.join(self.dir, "server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="fake-apiserver")
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the file interface (standalone mode) ----------------------------------
    def _load_claim_files(self):
        if not self.record_dir:
            return
        seen = set()
        for path in glob.glob(os.path.join(self.dir, "claims", "*.json")):
            seen.add(path)
            try:
                mtime = os.stat(path).st_mtime_ns
                if self._claim_files.get(path, (None,))[0] == mtime:
                    continue
                with open(path) as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            stored = self.add_claim(obj)
            key = (stored["metadata"]["namespace"], stored["metadata"]["name"])
            self._uids[key] = stored["metadata"]["uid"]
            self._claim_files[path] = (mtime, key)
        for path in list(self._claim_files):
            if path not in seen:
                self.claims.pop(self._claim_files.pop(path)[1], None)

    def _record_write(self, entry):
        self.writes.append(entry)
        if self.record_dir:
            with open(os.path.join(self.dir, "writes.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _save_slice(self, obj):
        if self.record_dir:
            d = os.path.join(self.dir, "slices")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, obj["metadata"]["name"] + ".json"), "w") as f:
                json.dump(obj, f, indent=1)

    def _drop_slice(self, name):
        if self.record_dir:
            try:
                os.unlink(os.path.join(self.dir, "slices", name + ".json"))
            except FileNotFoundError:
                pass

    # -- the API ---------------------------------------------------------------
    def handle(self, method, path, query, headers, raw):
        """(code, body object) for one authenticated request."""
        with self.lock:
            self._load_claim_files()
            m = re.fullmatch(PREFIX + r"/namespaces/([^/]+)/resourceclaims(?:/([^/]+))?", path)
            if m:
                return self._claims(method, urllib.parse.unquote(m.group(1)),
                                    m.group(2) and urllib.parse.unquote(m.group(2)), query)
            m = re.fullmatch(PREFIX + r"/resourceslices(?:/([^/]+))?", path)
            if m:
                name = m.group(1) and urllib.parse.unquote(m.group(1))
                return self._slices_api(method, path, name, query, headers, raw)
            m = re.fullmatch(r"/api/v1/nodes/([^/]+)", path)
            if m:
                if method != "GET":
                    return 405, status(405, "MethodNotAllowed",
                                       "the server does not allow this method")
                n = self.nodes.get(urllib.parse.unquote(m.group(1)))
                if n is None:
                    return 404, status(404, "NotFound", f'nodes "{m.group(1)}" not found',
                                       m.group(1), "nodes")
                return 200, copy.deepcopy(n)
            if path in ("/api", "/apis", f"/apis/{GROUP}", PREFIX, "/version"):
                return 200, self._discovery(path)
            return 404, status(404, "NotFound", "the server could not find the requested resource")

    def _discovery(self, path):
        if path == "/version":
            return {"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake"}
        if path == PREFIX:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
                    "resources": [
                        {"name": "resourceclaims", "singularName": "resourceclaim",
                         "namespaced": True, "kind": "ResourceClaim",
                         "verbs": ["get", "list"]},
                        {"name": "resourceslices", "singularName": "resourceslice",
                         "namespaced": False, "kind": "ResourceSlice",
                         "verbs": ["create", "delete", "get", "list", "update"]}]}
        return {"kind": "APIVersions" if path == "/api" else "APIGroupList", "apiVersion": "v1"}

    def _claims(self, method, ns, name, query):
        if method != "GET":
            return 405, status(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
        if name is None:
            try:
                sel = parse_selector(query.get("fieldSelector", ""), CLAIM_FIELDS, "claims")
            except ValueError as e:
                return 400, status(400, "BadRequest", str(e))
            items = [self._as_item(c) for (n, _), c in sorted(self.claims.items())
                     if n == ns and matches(c, sel, CLAIM_FIELDS)]
            return 200, {"kind": "ResourceClaimList", "apiVersion": API_VERSION,
                         "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        c = self.claims.get((ns, name))
        if c is None:
            return 404, status(404, "NotFound",
                               f'resourceclaims.{GROUP} "{name}" not found', name, "resourceclaims")
        return 200, copy.deepcopy(c)

    @staticmethod
    def _as_item(obj):
        o = copy.deepcopy(obj)
        o.pop("kind", None)
        o.pop("apiVersion", None)
        return o

    def _slices_api(self, method, path, name, query, headers, raw):
        kind = "resourceslices"
        if method == "GET" and name is None:
            if query.get("watch") in ("1", "true"):
                return 405, status(405, "MethodNotAllowed", "watch is not implemented by the fake")
            try:
                sel = parse_selector(query.get("fieldSelector", ""), SLICE_FIELDS, kind)
            except ValueError as e:
                return 400, status(400, "BadRequest", str(e))
            lsel = parse_label_selector(query.get("labelSelector", ""))
            items = [self._as_item(s) for _, s in sorted(self._slices.items())
                     if matches(s, sel, SLICE_FIELDS) and labels_match(s, lsel)]
            return 200, {"kind": "ResourceSliceList", "apiVersion": API_VERSION,
                         "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        if method == "GET":
            s = self._slices.get(name)
            if s is None:
                return 404, status(404, "NotFound", f'{kind}.{GROUP} "{name}" not found',
                                   name, kind)
            return 200, copy.deepcopy(s)
        if method not in ("POST", "PUT", "DELETE") or (method == "POST") != (name is None):
            return 405, status(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")

        # A write: recorded whatever comes of it.
        body = None
        entry = {"method": method, "path": path, "body": None, "code": None,
                 "response": None}
        try:
            if raw:
                body = json.loads(raw)
            entry["body"] = body
        except ValueError:
            entry["body"] = raw.decode("utf-8", "replace")
        code, resp = self._slice_write(method, name, headers, raw, body)
        entry["code"], entry["response"] = code, resp
        self._record_write(entry)
        return code, resp

    def _slice_write(self, method, name, headers, raw, body):
        kind = "resourceslices"
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
        if method == "DELETE":
            opts = body if isinstance(body, dict) else {}
            s = self._slices.get(name)
            if s is None:
                return 404, status(404, "NotFound", f'{kind}.{GROUP} "{name}" not found',
                                   name, kind)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != s["metadata"]["uid"]:
                return 409, status(409, "Conflict",
                                   f"Operation cannot be fulfilled on {kind}.{GROUP} \"{name}\": "
                                   f"Precondition failed: UID in precondition: {pre['uid']}, "
                                   f"UID in object meta: {s['metadata']['uid']}", name, kind)
            if pre.get("resourceVersion") and pre["resourceVersion"] != s["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict",
                                   f"Operation cannot be fulfilled on {kind}.{GROUP} \"{name}\": "
                                   "the object has been modified; please apply your changes to "
                                   "the latest version and try again", name, kind)
            del self._slices[name]
            self._next_rv()
            self._drop_slice(name)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success",
                         "details": {"name": name, "group": GROUP, "kind": kind,
                                     "uid": s["metadata"]["uid"]}}
        if ctype not in ("application/json", "application/merge-patch+json") \
                and not (ctype == "" and raw == b""):
            return 415, status(415, "UnsupportedMediaType",
                               'the body of the request was in an unknown format - accepted '
                               'media types include: application/json, application/yaml, '
                               'application/vnd.kubernetes.protobuf')
        if not isinstance(body, dict):
            return 400, status(400, "BadRequest",
                               "the object provided is unrecognized (must be of type ResourceSlice)")
        obj = copy.deepcopy(body)
        if obj.get("apiVersion", API_VERSION) != API_VERSION or \
                obj.get("kind", "ResourceSlice") != "ResourceSlice":
            return 400, status(400, "BadRequest",
                               f"the API version in the data ({obj.get('apiVersion')}) does not "
                               f"match the expected API version ({API_VERSION})"
                               if obj.get("apiVersion", API_VERSION) != API_VERSION else
                               f"the object provided is unrecognized (must be of type "
                               f"{obj.get('kind')})")
        obj["apiVersion"], obj["kind"] = API_VERSION, "ResourceSlice"
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return 400, status(400, "BadRequest", "metadata must be an object")
        for ro in ["deletionTimestamp", "deletionGracePeriodSeconds"]:
            meta.pop(ro, None)

        if method == "POST":
            if meta.get("resourceVersion"):
                return 500, status(500, "InternalError",
                                   "Internal error occurred: resourceVersion should not be set "
                                   "on objects to be created")
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            if not meta.get("name"):
                return 422, self._invalid(None, ["metadata.name: Required value: name or "
                                                 "generateName is required"])
            name = meta["name"]
            problems = slice_problems(obj)
            if problems:
                return 422, self._invalid(name, problems)
            if name in self._slices:
                return 409, status(409, "AlreadyExists", f'{kind}.{GROUP} "{name}" already exists',
                                   name, kind)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
            meta["resourceVersion"] = self._next_rv()
            obj.pop("status", None)
            self._slices[name] = obj
            self._save_slice(obj)
            return 201, copy.deepcopy(obj)

        # PUT
        if meta.get("name") and meta["name"] != name:
            return 400, status(400, "BadRequest",
                               f"the name of the object ({meta['name']}) does not match the name "
                               f"on the URL ({name})")
        meta["name"] = name
        old = self._slices.get(name)
        if old is None:
            return 404, status(404, "NotFound", f'{kind}.{GROUP} "{name}" not found', name, kind)
        om = old["metadata"]
        if meta.get("uid") and meta["uid"] != om["uid"]:
            return 409, status(409, "Conflict",
                               f"Operation cannot be fulfilled on {kind}.{GROUP} \"{name}\": "
                               f"Precondition failed: UID in precondition: {meta['uid']}, "
                               f"UID in object meta: {om['uid']}", name, kind)
        # ResourceSlice allows unconditional updates (no resourceVersion);
        # a stale one is a conflict.
        if meta.get("resourceVersion") and meta["resourceVersion"] != om["resourceVersion"]:
            return 409, status(409, "Conflict",
                               f"Operation cannot be fulfilled on {kind}.{GROUP} \"{name}\": "
                               "the object has been modified; please apply your changes to the "
                               "latest version and try again", name, kind)
        problems = slice_problems(obj)
        if obj.get("spec", {}).get("driver") != old["spec"].get("driver"):
            problems.append("spec.driver: Invalid value: field is immutable")
        if obj.get("spec", {}).get("nodeName") != old["spec"].get("nodeName"):
            problems.append("spec.nodeName: Invalid value: field is immutable")
        if (obj.get("spec", {}).get("pool") or {}).get("name") != old["spec"]["pool"].get("name"):
            problems.append("spec.pool.name: Invalid value: field is immutable")
        if problems:
            return 422, self._invalid(name, problems)
        meta["uid"] = om["uid"]
        meta["creationTimestamp"] = om["creationTimestamp"]
        meta["generation"] = om.get("generation", 1) + (obj.get("spec") != old.get("spec"))
        same = copy.deepcopy(obj)
        same["metadata"]["resourceVersion"] = om["resourceVersion"]
        if same == old:
            # A no-op update: the real server writes nothing and keeps the
            # resourceVersion.
            return 200, copy.deepcopy(old)
        meta["resourceVersion"] = self._next_rv()
        self._slices[name] = obj
        self._save_slice(obj)
        return 200, copy.deepcopy(obj)

    @staticmethod
    def _invalid(name, problems):
        s = status(422, "Invalid", f'ResourceSlice.{GROUP} "{name}" is invalid: '
                   + ", ".join(problems), name, "ResourceSlice")
        s["details"]["causes"] = [{"reason": "FieldValueInvalid", "message": p,
                                   "field": p.split(":", 1)[0]} for p in problems]
        return s


class _Handler(http.server.BaseHTTPRequestHandler):
    api = None  # set by FakeApiServer.start
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_APISERVER_LOG"):
            sys.stderr.write("fake-apiserver: " + fmt % args + "\n")

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self):
        api = self.api
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        with api.lock:
            api.requests.append({"method": self.command, "path": path, "query": query,
                                 "headers": headers})
            fault = None
            for f in api.faults:
                if f["method"] in (self.command, "*") and f["re"].search(path) and \
                        (f["times"] is None or f["times"] > 0):
                    if f["times"] is not None:
                        f["times"] -= 1
                    fault = f
                    break
        if fault and fault["delay"]:
            threading.Event().wait(fault["delay"])
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):].strip() not in api.tokens:
            self._send(401, status(401, "Unauthorized", "Unauthorized"))
            return
        if fault and fault["code"]:
            self._send(fault["code"], status(fault["code"], fault["reason"], fault["message"]))
            return
        code, body = api.handle(self.command, path, query, headers, raw)
        self._send(code, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


def validate_objects(objects, npm_dir, validator=None):
    """(exit code, output) of `node validate.mjs` over a JSON list of
    `objects`, run in `npm_dir` (where `npm ci` installed
    tests/deploy/package-lock.json). The validator is npm_dir's copy, else
    the source tree's."""
    node = shutil.which("node")
    if not node:
        raise AssertionError("node is not installed (make deps)")
    validator = validator or (os.path.join(npm_dir, "validate.mjs")
                              if os.path.exists(os.path.join(npm_dir, "validate.mjs"))
                              else DEFAULT_VALIDATOR)
    if not objects:
        return 0, "(no objects)\n"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(objects, f)
    try:
        out = subprocess.run([node, validator, f.name], capture_output=True, text=True,
                             cwd=npm_dir, env={**os.environ, "NODE_PATH": os.path.join(
                                 npm_dir, "node_modules")})
    finally:
        os.unlink(f.name)
    return out.returncode, out.stdout + out.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="certs, token, claims/, slices/, writes.jsonl")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", help="the bearer token (default: DIR/token, or a new one)")
    ap.add_argument("--validate", metavar="NPM_DIR",
                    help="validate the bodies in DIR/writes.jsonl and exit")
    a = ap.parse_args()
    if a.validate:
        objs = []
        with open(os.path.join(a.dir, "writes.jsonl")) as f:
            for line in f:
                w = json.loads(line)
                if w["method"] in ("POST", "PUT") and isinstance(w["body"], dict):
                    o = w["body"]
                    o.setdefault("apiVersion", API_VERSION)
                    o.setdefault("kind", "ResourceSlice")
                    objs.append(o)
        code, out = validate_objects(objs, a.validate)
        sys.stdout.write(out)
        sys.exit(code)
    os.makedirs(os.path.join(a.dir, "claims"), exist_ok=True)
    srv = FakeApiServer(a.dir, a.host, a.port, a.token, record_dir=True).start()
    print(srv.port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    srv.stop()


if __name__ == "__main__":
    main()
