#!/usr/bin/env python3
"""What two tiers can reach on the harness's Zipf scenario (issue 21): an
offline simulation of memory + disk policies on a Zipf(s) stream over N keys,
beside the ideal static top-C cache of lib/zipf_ref.py. Objects are of one
size, so capacities are in objects (320 MiB of 32 KiB objects = 10240).

Policies (memory,disk,promotion):
  s3   memory S3-FIFO (edge's foyer config: small 10 %, ghost, freq cap 3)
  lfu  memory W-TinyLFU (window 1 %, protected 80 %, frequency admission)
  disk: ins = every insertion written (edge today, foyer WriteOnInsertion);
        evict = written when memory evicts (WriteOnEviction);
        admit = on eviction, and only if more frequent than the disk's oldest
        freqN = on insertion, once requested N times (counted as it ages)
        hitN = on the Nth request, a hit or a miss, once per stay in memory
               (edge's cache.disk_admission = "frequency", N = 3)
        hitN/freqN + rN: when the disk evicts, an entry read from disk N
               times since it was written is rewritten instead (at most 8
               in a row), and its reads are taken (edge's reinsertion.rs,
               N = 1)
  promo/nopromo: a disk hit is (or is not) put back into memory
  single: one tier of memory+disk objects (no disk), for reference

    benches/zipf-tiers.py s3,ins,promo s3,evict,promo lfu,admit,nopromo lfu,single
    benches/zipf-tiers.py s3,hit3,promo s3,hit3,nopromo   (edge: 71.6 %, 72.0 % measured)
    benches/zipf-tiers.py s3,hit3r1,nopromo   (edge's default: 75.1 %; 73.0 % measured)
"""
import bisect
import collections
import itertools
import random
import re
import sys

N, S = 100000, 0.9
MEM, DISK = 10240, 10240
WARM, MEASURED = 600000, 300000


class Freq:
    """Request counts, halved every `period` requests (TinyLFU's aging)."""

    def __init__(self, period):
        self.c, self.n, self.period = collections.Counter(), 0, period

    def add(self, k):
        self.c[k] += 1
        self.n += 1
        if self.n >= self.period:
            self.n = 0
            for x in list(self.c):
                self.c[x] //= 2
                if not self.c[x]:
                    del self.c[x]

    def __getitem__(self, k):
        return self.c.get(k, 0)


class S3Fifo:
    def __init__(self, cap, on_evict):
        self.cap, self.scap = cap, max(1, cap // 10)
        self.small, self.main, self.ghost = (collections.OrderedDict() for _ in range(3))
        self.freq, self.on_evict = {}, on_evict

    def __contains__(self, k):
        return k in self.small or k in self.main

    def hit(self, k):
        self.freq[k] = min(3, self.freq[k] + 1)

    def insert(self, k):
        (self.main if self.ghost.pop(k, 0) is None else self.small)[k] = None
        self.freq[k] = 0
        while len(self.small) + len(self.main) > self.cap:
            self.evict()

    def evict(self):
        if len(self.small) >= self.scap:
            k, _ = self.small.popitem(last=False)
            if self.freq[k] > 0:
                self.main[k], self.freq[k] = None, 0
                return
            self.ghost[k] = None
            if len(self.ghost) > self.cap:
                self.ghost.popitem(last=False)
            del self.freq[k]
            self.on_evict(k)
            return
        while True:
            k, _ = self.main.popitem(last=False)
            if self.freq[k] > 0:
                self.freq[k] -= 1
                self.main[k] = None
                continue
            del self.freq[k]
            self.on_evict(k)
            return


class WTinyLfu:
    def __init__(self, cap, freq, on_evict):
        self.wcap = max(1, cap // 100)
        self.pcap = int((cap - self.wcap) * 0.8)
        self.cap, self.f, self.on_evict = cap, freq, on_evict
        self.win, self.prob, self.prot = (collections.OrderedDict() for _ in range(3))

    def __contains__(self, k):
        return k in self.win or k in self.prob or k in self.prot

    def hit(self, k):
        if k in self.win:
            self.win.move_to_end(k)
        elif k in self.prob:
            del self.prob[k]
            self.prot[k] = None
            if len(self.prot) > self.pcap:
                v, _ = self.prot.popitem(last=False)
                self.prob[v] = None
        else:
            self.prot.move_to_end(k)

    def insert(self, k):
        self.win[k] = None
        if len(self.win) <= self.wcap:
            return
        c, _ = self.win.popitem(last=False)
        if len(self.prob) + len(self.prot) < self.cap - self.wcap:
            self.prob[c] = None
            return
        v = next(iter(self.prob)) if self.prob else next(iter(self.prot))
        if self.f[c] > self.f[v]:
            (self.prob if v in self.prob else self.prot).pop(v)
            self.prob[c] = None
            self.on_evict(v)
        else:
            self.on_evict(c)


class Disk:
    """A FIFO of objects (foyer's block engine evicts its oldest block),
    with reinsertion of entries read `reinsert` times since written."""

    def __init__(self, cap, freq, admit, reinsert=0):
        self.cap, self.q, self.f, self.admit = cap, collections.OrderedDict(), freq, admit
        self.reinsert, self.rewrites = reinsert, 0
        self.reads = Freq(10 * (MEM + DISK))  # edge: 10 x disk bytes / 16 KiB

    def __contains__(self, k):
        return k in self.q

    def put(self, k):
        if k in self.q or self.cap == 0:
            return
        if len(self.q) >= self.cap:
            if self.admit and self.f[k] <= self.f[next(iter(self.q))]:
                return
            for tries in range(9):
                v, _ = self.q.popitem(last=False)
                if tries < 8 and self.reinsert and self.reads[v] >= self.reinsert:
                    self.q[v] = None
                    self.rewrites += 1
                    self.reads.c.pop(v, None)
                    continue
                break
        self.q[k] = None


def run(memkind, disk, promote):
    w = [1 / (i**S) for i in range(1, N + 1)]
    tot = sum(w)
    cdf = list(itertools.accumulate(x / tot for x in w))
    rnd = random.Random(1)
    f = Freq(10 * (MEM + DISK))
    single = disk == "single"
    m = re.fullmatch(r"(.*\d)r(\d+)", disk)
    disk, reinsert = (m.group(1), int(m.group(2))) if m else (disk, 0)
    d = Disk(0 if single else DISK, f, disk == "admit", reinsert)
    on_evict = d.put if disk in ("evict", "admit") else (lambda k: None)
    cap = MEM + DISK if single else MEM
    mem = S3Fifo(cap, on_evict) if memkind == "s3" else WTinyLfu(cap, f, on_evict)
    hits = disk_hits = 0
    written = set()
    for t in range(WARM + MEASURED):
        k = bisect.bisect_left(cdf, rnd.random())
        f.add(k)
        counted = t >= WARM
        if k in mem:
            mem.hit(k)
            hits += counted
            if disk.startswith("hit") and f[k] >= int(disk[3:]) and k not in written:
                written.add(k)
                d.put(k)
        elif k in d:
            hits += counted
            disk_hits += counted
            d.reads.add(k)
            if promote:
                mem.insert(k)
        else:
            mem.insert(k)
            if disk.startswith("hit"):
                written.discard(k)
                if f[k] >= int(disk[3:]):
                    written.add(k)
                    d.put(k)
            if disk == "ins" or (disk.startswith("freq") and f[k] >= int(disk[4:])):
                d.put(k)
    return 100 * hits / MEASURED, 100 * disk_hits / MEASURED, d.rewrites


if __name__ == "__main__":
    print(f"Zipf s={S} over {N} keys, memory {MEM} + disk {DISK} objects")
    print("| policy | hit % | of which disk % | disk rewrites |\n|---|---|---|---|")
    for arg in sys.argv[1:] or ["s3,ins,promo", "s3,evict,promo", "lfu,admit,nopromo", "lfu,single"]:
        parts = (arg.split(",") + ["promo"])[:3]
        h, dh, rw = run(parts[0], parts[1], parts[2] == "promo")
        print(f"| {arg} | {h:.1f} | {dh:.1f} | {rw} |", flush=True)
