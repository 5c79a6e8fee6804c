# SPDX-License-Identifier: Apache-2.0
"""A scripted physpool daemon (Python grpcio server on a unix socket) for
testing what physpoolctl sends: lists that page, Allocate attempts answered
from a script, and a record of every request.

Pages are small on purpose (2 items, or 2 occupancy runs, unless the
request's page_size says otherwise), tokens are "page-N", and a token it did
not hand out is INVALID_ARGUMENT, as the daemon does.
"""
import os
import socket
import threading
from concurrent import futures

import grpc

MIB = 1 << 20


class FakePhyspool:
    def __init__(self, pb, directory):
        self.pb = pb
        self.dir = directory
        self.socket = os.path.join(directory, "fake.sock")
        self.backing = os.path.join(directory, "backing")
        with open(self.backing, "wb") as f:
            f.truncate(1 << 16)
        self.lock = threading.Lock()
        self.requests = []          # (method, page_size, page_token)
        self.allocate_script = ["ok"]
        self.attempts = []          # request_id of each Allocate attempt
        self.released = []
        self.repeat_token = False   # answer every page with its own token
        self.leases = [self._lease(f"l-{i:016x}", tenant="alice") for i in range(5)]
        self.tenants = [pb.TenantInfo(name=n, roles=["tenant"]) for n in ("alice", "bob", "root")]
        self.segments = [
            pb.SegmentInfo(id=0, iova=0x100000000, bytes=16 * MIB, free_bytes=7 * MIB,
                           used_bytes=9 * MIB, backing_path=self.backing),
            pb.SegmentInfo(id=1, iova=0x101000000, bytes=8 * MIB, freelist=1, numa_node=1,
                           free_bytes=8 * MIB, backing_path=self.backing),
            pb.SegmentInfo(id=2, iova=0x102000000, bytes=2 * MIB, freelist=2,
                           free_bytes=2 * MIB, backing_path=self.backing),
        ]
        run = pb.OccupancyRun
        self.occupancy = [  # (segment, runs)
            (self.segments[0], [run(state=run.USED, iova=0x100000000, length=8 * MIB),
                                run(state=run.PREEMPTIBLE, iova=0x100800000, length=MIB),
                                run(state=run.FREE, iova=0x100900000, length=7 * MIB)]),
            (self.segments[1], [run(state=run.FREE, iova=0x101000000, length=8 * MIB)]),
        ]
        self.granted = {}
        h = grpc.unary_unary_rpc_method_handler
        s = grpc.unary_stream_rpc_method_handler

        def unary(fn, req, resp):
            return h(fn, request_deserializer=req.FromString,
                     response_serializer=resp.SerializeToString)

        pool = grpc.method_handlers_generic_handler("physpool.v1.Pool", {
            "GetPoolInfo": unary(self.get_pool_info, pb.GetPoolInfoRequest,
                                 pb.GetPoolInfoResponse),
            "Allocate": unary(self.allocate, pb.AllocateRequest, pb.AllocateResponse),
            "GetLease": unary(self.get_lease, pb.GetLeaseRequest, pb.GetLeaseResponse),
            "Renew": unary(self.renew, pb.RenewRequest, pb.RenewResponse),
            "Release": unary(self.release, pb.ReleaseRequest, pb.ReleaseResponse),
            "ListLeases": unary(self.list_leases, pb.ListLeasesRequest, pb.ListLeasesResponse),
            "Watch": s(self.watch, request_deserializer=pb.WatchRequest.FromString,
                       response_serializer=pb.LeaseEvent.SerializeToString),
        })
        admin = grpc.method_handlers_generic_handler("physpool.v1.Admin", {
            "ListLeases": unary(self.admin_list_leases, pb.AdminListLeasesRequest,
                                pb.ListLeasesResponse),
            "ListTenants": unary(self.list_tenants, pb.ListTenantsRequest,
                                 pb.ListTenantsResponse),
            "ListSegments": unary(self.list_segments, pb.ListSegmentsRequest,
                                  pb.ListSegmentsResponse),
            "GetOccupancy": unary(self.get_occupancy, pb.OccupancyRequest,
                                  pb.OccupancyResponse),
        })
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  handlers=[pool, admin])
        if not self.server.add_insecure_port("unix:" + self.socket):
            raise RuntimeError("cannot listen on " + self.socket)
        self.server.start()
        # The fd socket: every "backing" request gets the backing file,
        # the lease's one run at offset 0 ("ok 1 0:0").
        self.fd_socket = os.path.join(self.dir, "fake.fds")
        self.fd_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.fd_listener.bind(self.fd_socket)
        self.fd_listener.listen(8)
        threading.Thread(target=self._serve_fds, daemon=True).start()

    def _serve_fds(self):
        while True:
            try:
                conn, _ = self.fd_listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                fd = os.open(self.backing, os.O_RDWR)
                try:
                    socket.send_fds(conn, [b"ok 1 0:0\n"], [fd])
                finally:
                    os.close(fd)

    def stop(self):
        self.server.stop(grace=None).wait()
        self.fd_listener.close()

    def _lease(self, lease_id, tenant="fake", request_id=""):
        pb = self.pb
        return pb.Lease(id=lease_id, tenant=tenant, bytes=4096, ttl_seconds=60, path="simple",
                        request_id=request_id,
                        runs=[pb.Run(iova=0x100000000, length=4096, view_offset=0)])

    # --- Pages ------------------------------------------------------------

    def _page(self, method, req, items, ctx, default=2):
        """items[start:start+size] and the next token, like the daemon."""
        with self.lock:
            self.requests.append((method, req.page_size, req.page_token))
        if req.page_size < 0:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative page_size")
        size = req.page_size or default
        start = 0
        if req.page_token:
            if not req.page_token.startswith("page-"):
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad page_token")
            start = int(req.page_token[5:])
        end = min(start + size, len(items))
        token = f"page-{end}" if end < len(items) else ""
        if self.repeat_token:
            token = req.page_token or "page-0"
        return items[start:end], token

    def pages_of(self, method):
        with self.lock:
            return [r for r in self.requests if r[0] == method]

    def list_leases(self, req, ctx):
        items, token = self._page("ListLeases", req, self.leases, ctx)
        return self.pb.ListLeasesResponse(leases=items, next_page_token=token)

    def admin_list_leases(self, req, ctx):
        leases = [l for l in self.leases if not req.tenant or l.tenant == req.tenant]
        items, token = self._page("Admin.ListLeases", req, leases, ctx)
        return self.pb.ListLeasesResponse(leases=items, next_page_token=token)

    def list_tenants(self, req, ctx):
        items, token = self._page("ListTenants", req, self.tenants, ctx)
        return self.pb.ListTenantsResponse(tenants=items, next_page_token=token)

    def list_segments(self, req, ctx):
        items, token = self._page("ListSegments", req, self.segments, ctx)
        return self.pb.ListSegmentsResponse(segments=items, next_page_token=token)

    def get_occupancy(self, req, ctx):
        """Pages count runs: a segment continues on the next page."""
        flat = [(seg, run) for seg, runs in self.occupancy
                if not req.HasField("segment_id") or seg.id == req.segment_id
                for run in runs]
        items, token = self._page("GetOccupancy", req, flat, ctx)
        out = self.pb.OccupancyResponse(next_page_token=token)
        for seg, run in items:
            if not out.segments or out.segments[-1].segment.id != seg.id:
                out.segments.add(segment=seg)
            out.segments[-1].runs.append(run)
        return out

    # --- Pool -------------------------------------------------------------

    def get_pool_info(self, req, ctx):
        return self.pb.GetPoolInfoResponse(page_size=4096, tenant="fake", source="sim",
                                           segments=self.segments,
                                           fd_socket=self.fd_socket)

    def allocate(self, req, ctx):
        with self.lock:
            n = len(self.attempts)
            self.attempts.append(req.request_id)
            step = self.allocate_script[min(n, len(self.allocate_script) - 1)]
        if step == "unavailable":
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "fake: going away")
        if step == "hang":  # until the client's deadline ends the call
            done = threading.Event()
            ctx.add_callback(done.set)
            done.wait(60)
            ctx.abort(grpc.StatusCode.CANCELLED, "fake: gone")
        lease = self._lease(f"l-fake{n:012d}", request_id=req.request_id)
        with self.lock:
            self.granted[lease.id] = lease
        return self.pb.AllocateResponse(lease=lease)

    def get_lease(self, req, ctx):
        with self.lock:
            lease = self.granted.get(req.lease_id)
        if lease is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no lease " + req.lease_id)
        return self.pb.GetLeaseResponse(lease=lease)

    def renew(self, req, ctx):
        return self.get_lease(req, ctx)

    def release(self, req, ctx):
        with self.lock:
            self.released.append(req.lease_id)
        return self.pb.ReleaseResponse(released=True)

    def watch(self, req, ctx):
        ctx.send_initial_metadata(())
        done = threading.Event()
        ctx.add_callback(done.set)
        done.wait(120)
        return
        yield  # a generator: a stream without events
