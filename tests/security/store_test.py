# SPDX-License-Identifier: Apache-2.0
"""Boundary: the store file (docs/security.md, "The store").

Promise: the daemon never starts with fewer leases than the store holds and
never takes an existing file for a new store. A damaged page, an I/O error,
a file that is not a store (an empty one included), a newer schema and a
WAL without its database each refuse the start with the file named, what was
wrong and what to do, and leave the file as it was.
"""
import hashlib
import os
import sqlite3

import harness
from harness import MIB, TOKENS, Daemon

import unittest

EIO_PRELOAD = os.environ.get("PHYSPOOL_EIO_PRELOAD", "")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)

    def fill(self, n=60):
        """alice holds n one-page leases with long labels (the leases table
        spans several pages); returns their ids, after a clean stop."""
        self.d.start()
        ids = [self.d.allocate(TOKENS["alice"], 4096, label=f"lease-{i:03d}-" + "x" * 200).id
               for i in range(n)]
        self.assertEqual(self.d.stop(), 0)
        return ids

    def assert_refused(self, *words):
        before = digest(self.d.store) if os.path.exists(self.d.store) else None
        code, log = self.d.start_fails()
        self.assertEqual(code, 1, log)
        self.assertIn("lease store refused", log)
        self.assertIn(self.d.store, log)
        for w in words:
            self.assertIn(w, log)
        if before is not None:
            self.assertEqual(digest(self.d.store), before, "the refused file was changed")
        return log

    def test_all_leases_come_back(self):
        ids = self.fill()
        self.d.start()
        for i in ids:
            self.assertEqual(self.d.get(TOKENS["alice"], i).id, i)

    def test_a_zeroed_page_of_the_leases_table_refuses_the_start(self):
        self.fill()
        db = sqlite3.connect(self.d.store)
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        leaves = [p for (p,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'leases' AND pagetype = 'leaf' "
            "ORDER BY pageno")]
        db.close()
        self.assertGreaterEqual(len(leaves), 3, "the table should span pages")
        with open(self.d.store, "r+b") as f:
            f.seek((leaves[1] - 1) * page_size)
            f.write(b"\0" * page_size)
        self.assert_refused("damaged", "docs/operations.md")

    def test_a_zeroed_index_page_refuses_the_start(self):
        self.fill()
        db = sqlite3.connect(self.d.store)
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'sqlite_autoindex_leases_1' "
            "AND pagetype = 'leaf' ORDER BY pageno")]
        db.close()
        self.assertTrue(pages)
        with open(self.d.store, "r+b") as f:
            f.seek((pages[-1] - 1) * page_size)
            f.write(b"\0" * page_size)
        self.assert_refused("damaged")

    def test_a_file_that_is_not_a_store_is_left_alone(self):
        with open(self.d.store, "wb") as f:
            f.write(os.urandom(8192))
        self.assert_refused("not a database")

    def test_an_existing_empty_file_is_not_taken_for_a_new_store(self):
        open(self.d.store, "wb").close()
        self.assert_refused("not a physpool lease store")
        self.assertEqual(os.path.getsize(self.d.store), 0)

    def test_another_sqlite_database_is_not_touched(self):
        db = sqlite3.connect(self.d.store)
        db.execute("CREATE TABLE accounts(id INTEGER)")
        db.commit()
        db.close()
        self.assert_refused("not a physpool lease store")

    def test_a_newer_schema_refuses_the_start(self):
        self.fill(3)
        db = sqlite3.connect(self.d.store)
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        self.assert_refused("newer physpoold")

    def test_a_wal_without_its_database_refuses_the_start(self):
        self.d.start()
        self.d.allocate(TOKENS["alice"], 4096)
        self.d.kill()  # the commit is in leases.db-wal
        wal = self.d.store + "-wal"
        self.assertGreater(os.path.getsize(wal), 0)
        os.unlink(self.d.store)
        self.assert_refused("deleted in part")
        self.assertFalse(os.path.exists(self.d.store))

    def test_an_io_error_refuses_the_start(self):
        self.assertTrue(EIO_PRELOAD, "PHYSPOOL_EIO_PRELOAD names the EIO shim")
        self.fill(20)
        env = {"LD_PRELOAD": EIO_PRELOAD, "PHYSPOOL_EIO_PATH": self.d.store,
               "PHYSPOOL_EIO_AFTER_BYTES": "8192"}
        mark = len(self.d.log())
        p = self.d.spawn(env=env)
        try:
            code = p.wait(timeout=30)
        except Exception:
            p.kill()
            p.wait()
            raise AssertionError("physpoold started on a store it cannot read: "
                                 + self.d.log()[mark:])
        log = self.d.log()[mark:]
        self.assertEqual(code, 1, log)
        self.assertIn("I/O error", log)
        self.assertIn(self.d.store, log)
        # Without the fault the same store starts, whole.
        self.d.start()
        self.assertEqual(len(self.d.call("Pool/ListLeases", harness.PB.ListLeasesRequest(),
                                         TOKENS["alice"]).leases), 20)


if __name__ == "__main__":
    harness.main()
