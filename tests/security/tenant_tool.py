# SPDX-License-Identifier: Apache-2.0
"""What a tenant or another local user does, as its own process (the attack
suite runs it as other uids).

  tenant_tool.py PYGEN call TARGET SERVICE/METHOD REQUEST_JSON [TOKEN]
      one unary call; prints {"code": "OK"|"UNAUTHENTICATED"|..., "message"}
  tenant_tool.py PYGEN hold-view FD_SOCKET LEASE TOKEN READY_FILE
      maps the lease's view, forks a worker that keeps the mapping (and no
      descriptor), writes the worker's pid to READY_FILE and exits; the
      worker stays until SIGTERM
  tenant_tool.py PYGEN park FD_SOCKET LEASE TOKEN N READY_FILE
      opens N fd-socket connections that ask for the view and never read
      the answer; writes READY_FILE and sleeps until SIGTERM
  tenant_tool.py PYGEN stash-view FD_SOCKET LEASE TOKEN READY_FILE
      takes the view, sends it to itself over a socketpair (a descriptor in
      flight, in no process's fd table), closes and unmaps everything else,
      writes READY_FILE and sleeps until SIGTERM
  tenant_tool.py PYGEN open PATH
      opens a file for reading; prints {"opened": bool, "errno": ...}
  tenant_tool.py PYGEN connect|connect-seqpacket SOCKET
      connects to a unix socket; prints {"connected": bool, "errno": ...}
"""
import json
import mmap
import os
import signal
import socket
import sys
import time


def fd_backing(path, lease, token):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(f"backing {lease} {token}\n".encode())
    msg, fds, _, _ = socket.recv_fds(s, 4096, 16)
    s.close()
    if not msg.startswith(b"ok"):
        sys.exit("fd socket: " + msg.decode())
    return fds[0]


def sleep_forever():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(3600)


def main():
    sys.path.insert(0, sys.argv[1])
    cmd, args = sys.argv[2], sys.argv[3:]
    if cmd == "call":
        import grpc
        from google.protobuf import json_format
        from physpool.v1 import physpool_pb2 as pb
        target, method, body = args[0], args[1], args[2]
        token = args[3] if len(args) > 3 else ""
        service, name = method.split("/")
        req_type = {"GetLease": "GetLeaseRequest", "RevokeLease": "RevokeLeaseRequest",
                    "ListTenants": "ListTenantsRequest", "Allocate": "AllocateRequest",
                    "GetPoolInfo": "GetPoolInfoRequest", "ListLeases": "ListLeasesRequest",
                    "GetStats": "GetStatsRequest", "ListSegments": "ListSegmentsRequest"}[name]
        if service == "Admin" and name in ("ListLeases",):
            req_type = "AdminListLeasesRequest"
        resp_type = {"ListLeases": "ListLeasesResponse"}.get(name, name + "Response")
        req = json_format.Parse(body, getattr(pb, req_type)())
        ch = grpc.insecure_channel(target)
        rpc = ch.unary_unary(f"/physpool.v1.{service}/{name}",
                             request_serializer=type(req).SerializeToString,
                             response_deserializer=getattr(pb, resp_type).FromString)
        md = [("authorization", "Bearer " + token)] if token else []
        try:
            rpc(req, metadata=md, timeout=10)
            print(json.dumps({"code": "OK", "message": ""}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "message": e.details()}))
    elif cmd == "hold-view":
        path, lease, token, ready = args
        fd = fd_backing(path, lease, token)
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size)
        os.close(fd)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            m[0:1]  # the worker keeps the mapping only
            sleep_forever()
        with open(ready + ".tmp", "w") as f:
            f.write(str(pid))
        os.rename(ready + ".tmp", ready)
        os._exit(0)
    elif cmd == "park":
        path, lease, token, n, ready = args
        conns = []
        for _ in range(int(n)):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.connect(path)
            s.sendall(f"backing {lease} {token}\n".encode())
            conns.append(s)
        open(ready, "w").close()
        sleep_forever()
    elif cmd == "stash-view":
        path, lease, token, ready = args
        fd = fd_backing(path, lease, token)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket.send_fds(a, [b"x"], [fd])
        os.close(fd)
        a.close()  # the view is now only in b's receive queue
        open(ready, "w").close()
        sleep_forever()
    elif cmd in ("connect", "connect-seqpacket"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if cmd == "connect"
                          else socket.SOCK_SEQPACKET)
        try:
            s.connect(args[0])
            print(json.dumps({"connected": True, "errno": 0}))
        except OSError as e:
            print(json.dumps({"connected": False, "errno": e.errno}))
    elif cmd == "open":
        try:
            os.close(os.open(args[0], os.O_RDONLY))
            print(json.dumps({"opened": True, "errno": 0}))
        except OSError as e:
            print(json.dumps({"opened": False, "errno": e.errno}))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
