#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A fake kubelet for DRA kubelet plugins (issue 15): drives a plugin as
kubelet's plugin manager and DRA manager do.

  1. Plugin watcher: waits for <registrar-dir>/<driver>-reg.sock to appear
     (a unix socket; kubelet watches the directory with inotify).
  2. Registration: dials it, calls pluginregistration.Registration/GetInfo
     (1 s deadline, as kubelet's operation generator), validates the answer
     as the DRA registration handler does (type "DRAPlugin", the name, an
     endpoint, a supported version) and calls NotifyRegistrationStatus
     with plugin_registered true, or false and the error (then raises).
  3. DRA manager: dials the endpoint and calls
     /k8s.io.kubelet.pkg.apis.dra.<v1|v1beta1>.DRAPlugin/NodePrepareResources
     and NodeUnprepareResources with kubelet's 45 s per-call deadline.

The message classes are generated with `protoc --python_out` from
proto/k8s/{pluginregistration/v1,dra/v1,dra/v1beta1}/api.proto (no
grpc_tools): calls go through grpc's generic channel.unary_unary.

    k = FakeKubelet(registrar_dir, "dma.physpool.io")
    info = k.register(timeout=30)          # waits for the socket
    resp = k.prepare([("ns", uid, "claim")])       # {uid: {"devices": [...], "error": ""}}
    k.unprepare([("ns", uid, "claim")], version="v1beta1")
    k.close()
"""
import atexit
import importlib.util
import shutil
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "proto")
PROTOS = {
    "registration": "k8s/pluginregistration/v1/api.proto",
    "v1": "k8s/dra/v1/api.proto",
    "v1beta1": "k8s/dra/v1beta1/api.proto",
}
SERVICES = {
    "v1": "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin",
    "v1beta1": "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin",
}
REGISTRATION = "pluginregistration.Registration"
# kubelet: pkg/kubelet/pluginmanager/operationexecutor (GetInfo 1 s; the
# notification within the 10 s dial timeout) and pkg/kubelet/cm/dra
# (45 s per NodePrepareResources/NodeUnprepareResources call).
GET_INFO_TIMEOUT = 1.0
NOTIFY_TIMEOUT = 10.0
CALL_TIMEOUT = 45.0
# The versions kubelet (1.34) knows, most preferred first.
KUBELET_VERSIONS = ["v1.DRAPlugin", "v1beta1.DRAPlugin"]

_modules = {}
_modules_lock = threading.Lock()


class RegistrationError(AssertionError):
    pass


def load_protos(proto_dir=None, gen_dir=None):
    """{"registration": module, "v1": module, "v1beta1": module}: the
    protoc-generated api_pb2 modules (generated once per process into
    gen_dir, a temporary directory by default)."""
    proto_dir = os.path.abspath(proto_dir or DEFAULT_PROTO_DIR)
    with _modules_lock:
        if proto_dir in _modules:
            return _modules[proto_dir]
        if _modules:
            # The generated files register themselves in protobuf's default
            # pool under their proto path: one source per process.
            return next(iter(_modules.values()))
        if gen_dir is None:
            gen_dir = tempfile.mkdtemp(prefix="fake-kubelet-pb-")
            atexit.register(shutil.rmtree, gen_dir, True)
        out = subprocess.run(["protoc", f"--proto_path={proto_dir}", f"--python_out={gen_dir}",
                              *PROTOS.values()], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"protoc: {out.stderr}")
        mods = {}
        for key, proto in PROTOS.items():
            path = os.path.join(gen_dir, proto[:-len(".proto")] + "_pb2.py")
            name = "fake_kubelet_pb_" + proto[:-len(".proto")].replace("/", "_")
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            sys.modules[name] = mod
            mods[key] = mod
        _modules[proto_dir] = mods
        return mods


def _ser(msg):
    return msg.SerializeToString()


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def socket_id(path):
    """(inode, mtime) of a socket file, or None: a new id is a new socket
    (the plugin restarted)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns) if stat.S_ISSOCK(st.st_mode) else None


def to_dict(resp):
    """{claim uid: {"devices": [{request_names, pool_name, device_name,
    cdi_device_ids}], "error": str}} of a Node(Un)PrepareResourcesResponse
    (no "devices" for Unprepare)."""
    out = {}
    for uid, r in resp.claims.items():
        d = {"error": r.error}
        if hasattr(r, "devices"):
            d["devices"] = [{"request_names": list(x.request_names), "pool_name": x.pool_name,
                             "device_name": x.device_name,
                             "cdi_device_ids": list(x.cdi_device_ids)} for x in r.devices]
        out[uid] = d
    return out


class FakeKubelet:
    def __init__(self, registrar_dir, driver, expected_endpoint=None,
                 expected_versions=("v1.DRAPlugin", "v1beta1.DRAPlugin"),
                 proto_dir=None, gen_dir=None):
        self.registrar_dir = registrar_dir
        self.driver = driver
        self.reg_socket = os.path.join(registrar_dir, f"{driver}-reg.sock")
        self.expected_endpoint = expected_endpoint
        self.expected_versions = expected_versions
        self.pb = load_protos(proto_dir, gen_dir)
        self.info = None
        self.endpoint = None
        self.registered_socket = None   # socket_id() of the registered socket
        self._channel = None
        self.calls = []                 # (method, request, response dict or error, seconds)

    # -- plugin watcher + registration -----------------------------------------
    def wait_for_socket(self, timeout=30.0, newer_than=None, proc=None):
        """Waits until the registration socket exists (and differs from
        `newer_than`, a socket_id()); raises TimeoutError. If `proc` (a
        Popen) ends first, raises with its exit code."""
        deadline = time.monotonic() + timeout
        while True:
            sid = socket_id(self.reg_socket)
            if sid is not None and sid != newer_than:
                return sid
            if proc is not None and proc.poll() is not None:
                raise RegistrationError(f"the plugin exited ({proc.returncode}) before "
                                        f"{self.reg_socket} appeared")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.reg_socket} did not appear within {timeout} s")
            time.sleep(0.05)

    def get_info(self, timeout=GET_INFO_TIMEOUT):
        pb = self.pb["registration"]
        with grpc.insecure_channel("unix:" + self.reg_socket) as ch:
            fn = ch.unary_unary(f"/{REGISTRATION}/GetInfo", request_serializer=_ser,
                                response_deserializer=pb.PluginInfo.FromString)
            return fn(pb.InfoRequest(), timeout=timeout, wait_for_ready=True)

    def notify(self, registered, error="", timeout=NOTIFY_TIMEOUT):
        pb = self.pb["registration"]
        with grpc.insecure_channel("unix:" + self.reg_socket) as ch:
            fn = ch.unary_unary(f"/{REGISTRATION}/NotifyRegistrationStatus",
                                request_serializer=_ser,
                                response_deserializer=pb.RegistrationStatusResponse.FromString)
            return fn(pb.RegistrationStatus(plugin_registered=registered, error=error),
                      timeout=timeout, wait_for_ready=True)

    def validate_info(self, info):
        """The DRA registration handler's checks (and the contract's); the
        error string, or "" if it registers."""
        if info.type != "DRAPlugin":
            return f'plugin type "{info.type}", want "DRAPlugin"'
        if info.name != self.driver:
            return f'plugin name "{info.name}", want "{self.driver}"'
        if not info.endpoint:
            return "no endpoint"
        if not os.path.isabs(info.endpoint):
            return f'endpoint "{info.endpoint}" is not an absolute path'
        if self.expected_endpoint and info.endpoint != self.expected_endpoint:
            return f'endpoint "{info.endpoint}", want "{self.expected_endpoint}"'
        versions = list(info.supported_versions)
        if not any(v in KUBELET_VERSIONS for v in versions):
            return f"none of the supported versions {versions} is one of {KUBELET_VERSIONS}"
        if self.expected_versions is not None and sorted(versions) != sorted(self.expected_versions):
            return f"supported versions {versions}, want {list(self.expected_versions)}"
        return ""

    def register(self, timeout=30.0, newer_than=None, proc=None):
        """Wait for the socket, GetInfo, validate, notify. Returns the
        PluginInfo; raises RegistrationError (after notifying the plugin of
        the failure, as kubelet does) if it does not validate."""
        sid = self.wait_for_socket(timeout, newer_than, proc)
        # The socket file may exist before the plugin listens on it; kubelet
        # retries registration with backoff. So do we, within `timeout`.
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.get_info()
                break
            except grpc.RpcError as e:
                if time.monotonic() > deadline or e.code() not in (
                        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                time.sleep(0.1)
        err = self.validate_info(info)
        if err:
            try:
                self.notify(False, err)
            finally:
                raise RegistrationError(err)
        self.notify(True)
        self.info = info
        self.registered_socket = sid
        if self.endpoint != info.endpoint:
            self.close()
        self.endpoint = info.endpoint
        return info

    def reregister(self, timeout=30.0, proc=None):
        """After a plugin restart: waits for a new registration socket and
        registers again."""
        self.close()
        return self.register(timeout, newer_than=self.registered_socket, proc=proc)

    # -- DRA calls ---------------------------------------------------------------
    def channel(self):
        if self.endpoint is None:
            raise RegistrationError("not registered")
        if self._channel is None:
            self._channel = grpc.insecure_channel("unix:" + self.endpoint)
        return self._channel

    def close(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _claims(self, version, claims):
        pb = self.pb[version]
        out = []
        for c in claims:
            if isinstance(c, dict) and "metadata" not in c:
                out.append(pb.Claim(namespace=c["namespace"], uid=c["uid"], name=c["name"]))
            elif isinstance(c, (tuple, list)):
                ns, uid, name = c
                out.append(pb.Claim(namespace=ns, uid=uid, name=name))
            else:   # a ResourceClaim object
                m = c["metadata"]
                out.append(pb.Claim(namespace=m["namespace"], uid=m["uid"], name=m["name"]))
        return out

    def _call(self, version, method, req_cls, resp_cls, claims, timeout):
        pb = self.pb[version]
        fn = self.channel().unary_unary(f"/{SERVICES[version]}/{method}",
                                        request_serializer=_ser,
                                        response_deserializer=getattr(pb, resp_cls).FromString)
        req = getattr(pb, req_cls)(claims=self._claims(version, claims))
        t = time.monotonic()
        try:
            resp = fn(req, timeout=timeout)
        except grpc.RpcError as e:
            self.calls.append((method, req, e, time.monotonic() - t))
            raise
        self.calls.append((method, req, resp, time.monotonic() - t))
        return resp

    def prepare_raw(self, claims, version="v1", timeout=CALL_TIMEOUT):
        return self._call(version, "NodePrepareResources", "NodePrepareResourcesRequest",
                          "NodePrepareResourcesResponse", claims, timeout)

    def unprepare_raw(self, claims, version="v1", timeout=CALL_TIMEOUT):
        return self._call(version, "NodeUnprepareResources", "NodeUnprepareResourcesRequest",
                          "NodeUnprepareResourcesResponse", claims, timeout)

    def prepare(self, claims, version="v1", timeout=CALL_TIMEOUT):
        """NodePrepareResources; claims are (namespace, uid, name) tuples,
        dicts with those keys, or ResourceClaim objects. Returns to_dict()."""
        return to_dict(self.prepare_raw(claims, version, timeout))

    def unprepare(self, claims, version="v1", timeout=CALL_TIMEOUT):
        return to_dict(self.unprepare_raw(claims, version, timeout))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
