#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Every physpool RPC and the error path of each, from Python
(Debian's python3-grpcio), against the real daemon.

usage: python_client_test.py PHYSPOOLD GEN_DIR
"""
import mmap
import os
import socket
import sys
import threading
import time
import unittest

import grpc

import physpool_testlib as lib

PHYSPOOLD, GEN = sys.argv[1], sys.argv[2]
pb = lib.load_protos(GEN)
A, B, ROOT = lib.TOKENS["alice"], lib.TOKENS["bob"], lib.TOKENS["root"]


class PythonClientTest(unittest.TestCase):
    def setUp(self):
        self.d = lib.Daemon(PHYSPOOLD)

    def tearDown(self):
        self.assertEqual(self.d.stop(), 0)

    def pool(self, method, req, resp, token=A, timeout=10):
        return self.d.call("Pool", method, req, resp, token, timeout)

    def admin(self, method, req, resp, token=ROOT):
        return self.d.call("Admin", method, req, resp, token)

    def assertCode(self, code, fn):
        with self.assertRaises(grpc.RpcError) as e:
            fn()
        self.assertEqual(e.exception.code(), code, e.exception.details())
        self.assertTrue(e.exception.details())

    def allocate(self, token=A, **kw):
        return self.pool("Allocate", pb.AllocateRequest(**kw), pb.AllocateResponse, token).lease

    def test_pool_rpcs(self):
        lease = self.allocate(bytes=65536, alignment=65536, max_segments=1, label="py")
        self.assertEqual(lease.bytes, 65536)
        self.assertEqual(lease.runs[0].iova % 65536, 0)
        self.assertEqual(lease.tenant, "alice")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.allocate(bytes=0))
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        lambda: self.allocate(bytes=1 << 40))

        got = self.pool("GetLease", pb.GetLeaseRequest(lease_id=lease.id), pb.GetLeaseResponse)
        self.assertEqual(got.lease.id, lease.id)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.pool(
            "GetLease", pb.GetLeaseRequest(lease_id="l-none"), pb.GetLeaseResponse))
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, lambda: self.pool(
            "GetLease", pb.GetLeaseRequest(lease_id=lease.id), pb.GetLeaseResponse, B))

        renewed = self.pool("Renew", pb.RenewRequest(lease_id=lease.id, ttl_seconds=60),
                            pb.RenewResponse)
        self.assertEqual(renewed.lease.ttl_seconds, 60)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.pool(
            "Renew", pb.RenewRequest(lease_id=""), pb.RenewResponse))

        listed = self.d.list_all("Pool", "ListLeases", pb.ListLeasesRequest(),
                                 pb.ListLeasesResponse, "leases", A)
        self.assertEqual([l.id for l in listed], [lease.id])
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, lambda: self.pool(
            "ListLeases", pb.ListLeasesRequest(), pb.ListLeasesResponse, ""))

        info = self.pool("GetPoolInfo", pb.GetPoolInfoRequest(), pb.GetPoolInfoResponse)
        self.assertEqual(info.page_size, 4096)
        self.assertEqual(info.used_bytes, 65536)
        self.assertEqual(info.tenant_leases, 1)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, lambda: self.pool(
            "GetPoolInfo", pb.GetPoolInfoRequest(), pb.GetPoolInfoResponse, "bad"))

        released = self.pool("Release", pb.ReleaseRequest(lease_id=lease.id),
                             pb.ReleaseResponse)
        self.assertTrue(released.released)
        again = self.pool("Release", pb.ReleaseRequest(lease_id=lease.id), pb.ReleaseResponse)
        self.assertFalse(again.released)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.pool(
            "Release", pb.ReleaseRequest(lease_id="l-none"), pb.ReleaseResponse))

    def test_watch_and_wait(self):
        events = self.d.watch(A, timeout=10)  # live once it returns
        lease = self.allocate(bytes=lib.MIB, preemptible=True)
        self.admin("RevokeLease", pb.RevokeLeaseRequest(lease_id=lease.id, reason="py"),
                   pb.RevokeLeaseResponse)
        event = next(events)
        self.assertEqual(event.kind, pb.LeaseEvent.REVOKED)
        self.assertEqual(event.lease_id, lease.id)
        events.cancel()
        bad = self.d.stream("Pool", "Watch", pb.WatchRequest(), pb.LeaseEvent, "", timeout=5)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, lambda: next(bad))
        # Wait: fill (waiting for the revoked MiB to be zeroed), then wait
        # from another tenant until the filler releases.
        full = self.allocate(bytes=24 * lib.MIB, may_wait=True)
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: self.pool(
            "Allocate", pb.AllocateRequest(bytes=4096, may_wait=True), pb.AllocateResponse,
            B, timeout=0.5))
        threading.Timer(0.3, lambda: self.pool(
            "Release", pb.ReleaseRequest(lease_id=full.id), pb.ReleaseResponse)).start()
        served = self.pool("Allocate", pb.AllocateRequest(bytes=4096, may_wait=True),
                           pb.AllocateResponse, B, timeout=10)
        self.assertEqual(served.lease.tenant, "bob")

    def test_lists_page(self):
        """Paged lists (AIP-158) followed to the end; needs the daemon's
        paging (issue 11 server side)."""
        ids = {self.allocate(bytes=4096).id for _ in range(5)}
        pages = []
        listed = self.d.list_all("Pool", "ListLeases", pb.ListLeasesRequest(),
                                 pb.ListLeasesResponse, "leases", A, page_size=2, pages=pages)
        self.assertEqual(sorted(l.id for l in listed), sorted(ids))  # each once
        self.assertEqual(len(pages), 3)
        self.assertTrue(all(len(p.leases) <= 2 for p in pages))
        self.assertEqual(pages[-1].next_page_token, "")
        admin_pages = []
        everyone = self.d.list_all("Admin", "ListLeases", pb.AdminListLeasesRequest(tenant="alice"),
                                   pb.ListLeasesResponse, "leases", ROOT, page_size=4,
                                   pages=admin_pages)
        self.assertEqual(sorted(l.id for l in everyone), sorted(ids))
        self.assertEqual(len(admin_pages), 2)
        tenant_pages = []
        tenants = self.d.list_all("Admin", "ListTenants", pb.ListTenantsRequest(),
                                  pb.ListTenantsResponse, "tenants", ROOT, page_size=1,
                                  pages=tenant_pages)
        self.assertEqual(sorted(t.name for t in tenants), ["alice", "bob", "root"])
        self.assertEqual(len(tenant_pages), 3)
        segs = self.d.list_all("Admin", "ListSegments", pb.ListSegmentsRequest(),
                               pb.ListSegmentsResponse, "segments", ROOT, page_size=1)
        self.assertEqual(len(segs), 2)
        # Above the maximum is coerced; negative and unknown tokens are refused.
        big = self.pool("ListLeases", pb.ListLeasesRequest(page_size=5000), pb.ListLeasesResponse)
        self.assertEqual(len(big.leases), 5)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.pool(
            "ListLeases", pb.ListLeasesRequest(page_size=-1), pb.ListLeasesResponse))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.pool(
            "ListLeases", pb.ListLeasesRequest(page_token="no-such-token"),
            pb.ListLeasesResponse))
        # Occupancy pages count runs: segment 0 (used, then free) continues
        # on the next page; merged, each segment's runs cover it exactly.
        occ_pages = []
        occ = self.d.occupancy(ROOT, page_size=1, pages=occ_pages)
        self.assertEqual([s.segment.id for s in occ], [0, 1])
        self.assertTrue(all(sum(len(s.runs) for s in p.segments) <= 1 for p in occ_pages))
        self.assertGreater(len(occ_pages), 2)
        for s in occ:
            self.assertEqual(sum(r.length for r in s.runs), s.segment.bytes)
            self.assertEqual(s.runs[0].iova, s.segment.iova)
            for a, b in zip(s.runs, s.runs[1:]):
                self.assertEqual(a.iova + a.length, b.iova)

    def fd_request(self, path, line):
        """The fd socket protocol (docs/vfio.md) with Python's own sockets."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(line.encode() + b"\n")
            msg, fds, _, _ = socket.recv_fds(s, 4096, 16)
            return msg.decode().rstrip("\n").split(" "), fds

    def test_fd_socket(self):
        lease = self.allocate(bytes=8192, max_segments=1)
        info = self.pool("GetPoolInfo", pb.GetPoolInfoRequest(), pb.GetPoolInfoResponse)
        self.assertEqual(info.fd_socket, self.d.socket + ".fds")
        self.assertEqual(info.isolation, "per-lease")
        # Tenants are never told where the segment files are.
        self.assertEqual(lease.runs[0].backing_path, "")
        self.assertTrue(all(s.backing_path == "" for s in info.segments))
        words, fds = self.fd_request(info.fd_socket, f"backing {lease.id} {A}")
        self.assertEqual(words, ["ok", "1", "0:0"])
        self.assertEqual(len(fds), 1)
        # The view is the lease and nothing else.
        self.assertEqual(os.fstat(fds[0]).st_size, lease.bytes)
        m = mmap.mmap(fds[0], lease.bytes)
        m[:16] = b"through the view"
        m.close()
        os.close(fds[0])
        words, fds = self.fd_request(info.fd_socket, f"backing {lease.id} {A}")
        self.assertEqual(os.pread(fds[0], 16, 0), b"through the view")
        os.close(fds[0])
        words, fds = self.fd_request(info.fd_socket, f"backing {lease.id} {B}")
        self.assertEqual(words[:2], ["error", "PERMISSION_DENIED"])
        self.assertEqual(fds, [])
        words, _ = self.fd_request(info.fd_socket, f"device 0000:00:01.0 {ROOT}")
        self.assertEqual(words[:2], ["error", "NOT_FOUND"])
        words, _ = self.fd_request(info.fd_socket, "hello")
        self.assertEqual(words[:2], ["error", "INVALID_ARGUMENT"])

    def test_tenants_see_only_their_own_bytes(self):
        """A writes a random pattern; nothing B is handed contains it."""
        info = self.pool("GetPoolInfo", pb.GetPoolInfoRequest(), pb.GetPoolInfoResponse)
        a = self.allocate(bytes=1 << 20)
        pattern = os.urandom(64)
        _, fds = self.fd_request(info.fd_socket, f"backing {a.id} {A}")
        m = mmap.mmap(fds[0], a.bytes)
        for off in range(0, a.bytes, 4096):
            m[off:off + 64] = pattern
        m.close()
        os.close(fds[0])
        a_pages = {(r.iova, r.length) for r in a.runs}

        def check_b(b):
            lease_b = self.pool("GetLease", pb.GetLeaseRequest(lease_id=b.id),
                                pb.GetLeaseResponse, token=B).lease
            _, fds = self.fd_request(info.fd_socket, f"backing {b.id} {B}")
            self.assertEqual(len(fds), 1)
            st = os.fstat(fds[0])
            self.assertEqual(st.st_size, b.bytes)
            data = os.pread(fds[0], st.st_size, 0)
            os.close(fds[0])
            self.assertEqual(len(data), b.bytes)
            self.assertNotIn(pattern, data)
            for run in list(b.runs) + list(lease_b.runs):
                self.assertEqual(run.backing_path, "")
            return {(r.iova, r.length) for r in b.runs}

        check_b(self.allocate(bytes=4 << 20, token=B))  # while A holds its lease
        self.pool("Release", pb.ReleaseRequest(lease_id=a.id), pb.ReleaseResponse)
        # A unmapped and closed everything: its pages come back (zeroed)
        # and B's next leases cover them; still no trace of the pattern.
        deadline = time.time() + 10
        while True:
            b = self.allocate(bytes=1 << 20, token=B)
            got = check_b(b)
            if any(lo <= a_lo < lo + n for lo, n in got for a_lo, _ in a_pages):
                break
            self.assertLess(time.time(), deadline, "A's pages never came back")
    def test_health_and_reflection(self):
        import health_pb2
        import reflection_pb2
        check = self.d.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        self.assertEqual(check(health_pb2.HealthCheckRequest(), timeout=5).status,
                         health_pb2.HealthCheckResponse.SERVING)
        info = self.d.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        reply = next(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                          timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        self.assertTrue({"physpool.v1.Pool", "physpool.v1.Admin",
                         "grpc.health.v1.Health"} <= names, names)

    def test_admin_rpcs(self):
        segs = self.d.list_all("Admin", "ListSegments", pb.ListSegmentsRequest(),
                               pb.ListSegmentsResponse, "segments", ROOT)
        self.assertEqual(len(segs), 2)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, lambda: self.admin(
            "ListSegments", pb.ListSegmentsRequest(), pb.ListSegmentsResponse, A))
        sid = segs[0].id
        self.assertTrue(self.admin("DrainSegment", pb.SegmentRequest(segment_id=sid),
                                   pb.SegmentResponse).segment.draining)
        self.assertFalse(self.admin("UndrainSegment", pb.SegmentRequest(segment_id=sid),
                                    pb.SegmentResponse).segment.draining)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "DrainSegment", pb.SegmentRequest(segment_id=42), pb.SegmentResponse))
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "UndrainSegment", pb.SegmentRequest(segment_id=42), pb.SegmentResponse))
        added = self.admin("AddSegment", pb.AddSegmentRequest(bytes=lib.MIB, freelist=3),
                           pb.SegmentResponse)
        self.assertEqual(added.segment.bytes, lib.MIB)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.admin(
            "AddSegment", pb.AddSegmentRequest(bytes=123), pb.SegmentResponse))
        self.admin("RemoveSegment", pb.SegmentRequest(segment_id=added.segment.id),
                   pb.RemoveSegmentResponse)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "RemoveSegment", pb.SegmentRequest(segment_id=added.segment.id),
            pb.RemoveSegmentResponse))
        lease = self.allocate(bytes=8192)
        all_leases = self.d.list_all("Admin", "ListLeases", pb.AdminListLeasesRequest(),
                                     pb.ListLeasesResponse, "leases", ROOT)
        self.assertEqual([l.id for l in all_leases], [lease.id])
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, lambda: self.admin(
            "ListLeases", pb.AdminListLeasesRequest(), pb.ListLeasesResponse, B))
        tenants = self.d.list_all("Admin", "ListTenants", pb.ListTenantsRequest(),
                                  pb.ListTenantsResponse, "tenants", ROOT)
        self.assertEqual(sorted(t.name for t in tenants), ["alice", "bob", "root"])
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, lambda: self.admin(
            "ListTenants", pb.ListTenantsRequest(), pb.ListTenantsResponse, A))
        limited = self.admin("SetTenantLimits", pb.SetTenantLimitsRequest(
            tenant="bob", limits=pb.Limits(max_leases=1)), pb.SetTenantLimitsResponse)
        self.assertEqual(limited.tenant.limits.max_leases, 1)
        self.allocate(B, bytes=4096)
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: self.allocate(B, bytes=4096))
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "SetTenantLimits", pb.SetTenantLimitsRequest(tenant="eve"),
            pb.SetTenantLimitsResponse))
        stats = self.admin("GetStats", pb.GetStatsRequest(), pb.GetStatsResponse)
        simple = [p for p in stats.paths if p.path == "simple"][0]
        self.assertEqual(simple.successes, 2)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, lambda: self.admin(
            "GetStats", pb.GetStatsRequest(), pb.GetStatsResponse, A))
        occ = self.d.occupancy(ROOT)
        self.assertEqual(len(occ), 2)
        for s in occ:
            self.assertEqual(sum(r.length for r in s.runs), s.segment.bytes)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "GetOccupancy", pb.OccupancyRequest(segment_id=9), pb.OccupancyResponse))
        revoked = self.admin("RevokeLease", pb.RevokeLeaseRequest(lease_id=lease.id),
                             pb.RevokeLeaseResponse)
        self.assertEqual(revoked.lease.id, lease.id)
        self.assertCode(grpc.StatusCode.NOT_FOUND, lambda: self.admin(
            "RevokeLease", pb.RevokeLeaseRequest(lease_id=lease.id), pb.RevokeLeaseResponse))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
