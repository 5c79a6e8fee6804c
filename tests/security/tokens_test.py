# SPDX-License-Identifier: Apache-2.0
"""Boundary: lease access tokens, the DRA driver's pods' credential
(docs/security.md, "Lease access tokens").

Promise: a token granted with a lease reaches that lease alone (its
GetLease, GetPoolInfo, its view on the fd socket): nothing else of its
tenant, no other call, no Admin; it dies with the last lease carrying it;
another tenant cannot claim its hash.
"""
import unittest

import grpc

import harness
from harness import MIB, TOKENS, Daemon, code_of, sha

TOKEN = "a-random-claim-token-of-128-bits-or-more"


class AccessTokenTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.mine = self.d.allocate(TOKENS["alice"], MIB, access_token_sha256=sha(TOKEN))
        self.other = self.d.allocate(TOKENS["alice"], MIB)

    def test_the_token_reaches_its_lease_alone(self):
        pb = harness.PB
        d = self.d
        self.assertEqual(d.get(TOKEN, self.mine.id).id, self.mine.id)
        self.assertTrue(d.call("Pool/GetPoolInfo", pb.GetPoolInfoRequest(), TOKEN).lease_scoped)
        denied = grpc.StatusCode.PERMISSION_DENIED
        self.assertEqual(code_of(lambda: d.get(TOKEN, self.other.id)), denied)
        self.assertEqual(code_of(lambda: d.allocate(TOKEN, 4096)), denied)
        self.assertEqual(code_of(lambda: d.release(TOKEN, self.mine.id)), denied)
        self.assertEqual(code_of(lambda: d.call("Pool/ListLeases", pb.ListLeasesRequest(),
                                                TOKEN)), denied)
        self.assertEqual(code_of(lambda: d.call("Admin/ListTenants", pb.ListTenantsRequest(),
                                                TOKEN)), denied)
        line, fds = d.backing(self.mine.id, TOKEN)
        self.assertTrue(line.startswith("ok"), line)
        for fd in fds:
            harness.os.close(fd)
        line, fds = d.backing(self.other.id, TOKEN)
        self.assertTrue(line.startswith("error PERMISSION_DENIED"), line)
        line, fds = d.fd_request(d.fd_socket, f"device 0000:00:00.0 {TOKEN}\n")
        self.assertTrue(line.startswith("error PERMISSION_DENIED"), line)

    def test_another_tenant_cannot_claim_the_hash(self):
        self.assertEqual(code_of(lambda: self.d.allocate(TOKENS["bob"], 4096,
                                                         access_token_sha256=sha(TOKEN))),
                         grpc.StatusCode.INVALID_ARGUMENT)

    def test_the_token_dies_with_its_last_lease(self):
        self.d.release(TOKENS["alice"], self.mine.id)
        self.assertEqual(code_of(lambda: self.d.get(TOKEN, self.mine.id)),
                         grpc.StatusCode.UNAUTHENTICATED)


if __name__ == "__main__":
    harness.main()
